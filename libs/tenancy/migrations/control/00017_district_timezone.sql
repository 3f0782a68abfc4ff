-- A district's time zone (an IANA name such as America/Chicago): the days and weeks of its product
-- analytics (funnels, retention, activation in the query service) begin at midnight there. Set with
-- `ctl tenant set-timezone`; 'UTC' until then. Names are checked against the IANA database when set
-- (timezones.Store.Set); the column keeps what was checked.

-- +goose Up
ALTER TABLE control.tenants ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC' CHECK (time_zone <> '');

-- +goose Down
ALTER TABLE control.tenants DROP COLUMN time_zone;
