// Package drop takes the files districts leave in their drop: a bucket (gocloud.dev/blob: a directory by
// default, or s3://, gs://, azblob://) with a prefix per district and source, <tenant>/<source>/, for every
// file-drop source. Each poll lists the files directly under each prefix and sends each to the gateway: a
// OneRoster CSV package (a zip holding manifest.csv) to POST /v1/roster/csv, anything else (a CSV, JSON or
// zip export of the SIS's own) to POST /v1/sources/{source}/uploads, mapped by the source's rules, as a
// bulk upload when its name holds ".bulk." and a delta otherwise. The file is then moved under
// processed/ (the gateway took it) or failed/ (the gateway refused it), with <name>.report.json beside it:
// the gateway's answer.
//
// A file is never sent twice: once the gateway answered, the file's name and its MD5 (its ETag when the
// bucket has no MD5) are recorded in the control schema (control.connector_drops) before it is moved; a
// file found recorded (a crash between the two) is only moved. A file the gateway could not take (it was
// unreachable, or answered 5xx or 429) stays where it is for the next poll.
package drop

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strings"
	"time"

	"gocloud.dev/blob"

	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/internal/gateway"
)

// Store is what the drop needs of the control schema (connectors.Store).
type Store interface {
	List(ctx context.Context, tenant string) ([]connectors.Source, error)
	Open(ctx context.Context, tenant, source string) (connectors.Secrets, error)
	Dropped(ctx context.Context, tenant, source, name, etag string) (connectors.Drop, bool, error)
	RecordDrop(ctx context.Context, tenant, source string, d connectors.Drop) error
}

// Gateway is where files go (gateway.Client).
type Gateway interface {
	SendPackage(ctx context.Context, apiKey string, zip []byte) (gateway.Answer, error)
	SendExport(ctx context.Context, apiKey, source, name, contentType string, body []byte, bulk bool) (gateway.Answer, error)
}

// Outcomes of a file, and the folders they are moved to.
const (
	Processed = "processed"
	Failed    = "failed"
)

// MaxFile bounds a dropped file's size; a larger one fails without being sent.
const MaxFile = 512 << 20

// Drop polls a bucket.
type Drop struct {
	bucket *blob.Bucket
	store  Store
	gw     Gateway
	log    *slog.Logger
}

// New returns a drop over bucket.
func New(bucket *blob.Bucket, store Store, gw Gateway, log *slog.Logger) *Drop {
	return &Drop{bucket: bucket, store: store, gw: gw, log: log}
}

// Run polls on every tick until ctx is done.
func (d *Drop) Run(ctx context.Context, tick <-chan time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			if _, err := d.Poll(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("polling the drop", "err", err)
			}
		}
	}
}

// Poll takes every file waiting in the drop and returns how many it moved.
func (d *Drop) Poll(ctx context.Context) (int, error) {
	srcs, err := d.store.List(ctx, "")
	if err != nil {
		return 0, err
	}
	moved := 0
	var errs []error
	for _, src := range srcs {
		if src.Kind != connectors.KindFileDrop {
			continue
		}
		n, err := d.pollSource(ctx, src)
		moved += n
		if err != nil {
			errs = append(errs, fmt.Errorf("drop of %s/%s: %w", src.TenantID, src.SourceID, err))
		}
	}
	return moved, errors.Join(errs...)
}

// Prefix is a source's folder in the drop.
func Prefix(tenant, source string) string { return tenant + "/" + source + "/" }

func (d *Drop) pollSource(ctx context.Context, src connectors.Source) (int, error) {
	prefix := Prefix(src.TenantID, src.SourceID)
	it := d.bucket.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	var objs []*blob.ListObject
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("listing %s: %w", prefix, err)
		}
		if obj.IsDir || strings.HasSuffix(obj.Key, ".report.json") || strings.HasPrefix(path.Base(obj.Key), ".") {
			continue
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		return 0, nil
	}
	secrets, err := d.store.Open(ctx, src.TenantID, src.SourceID)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, obj := range objs {
		ok, err := d.take(ctx, src, secrets.APIKey, obj)
		if err != nil {
			return moved, fmt.Errorf("%s: %w", obj.Key, err)
		}
		if ok {
			moved++
		}
	}
	return moved, nil
}

// version names the content of an object: its MD5, else its ETag (a local directory's is its modification
// time and size).
func (d *Drop) version(ctx context.Context, obj *blob.ListObject) (string, error) {
	if len(obj.MD5) > 0 {
		return "md5:" + hex.EncodeToString(obj.MD5), nil
	}
	attrs, err := d.bucket.Attributes(ctx, obj.Key)
	if err != nil {
		return "", fmt.Errorf("reading the attributes: %w", err)
	}
	if len(attrs.MD5) > 0 {
		return "md5:" + hex.EncodeToString(attrs.MD5), nil
	}
	if attrs.ETag != "" {
		return "etag:" + attrs.ETag, nil
	}
	return fmt.Sprintf("mod:%d:%d", attrs.ModTime.UnixNano(), attrs.Size), nil
}

// take sends one file unless it was sent, records it, and moves it. It reports whether the file was moved
// (false: left for the next poll).
func (d *Drop) take(ctx context.Context, src connectors.Source, apiKey string, obj *blob.ListObject) (bool, error) {
	name := path.Base(obj.Key)
	ver, err := d.version(ctx, obj)
	if err != nil {
		return false, err
	}
	rec, done, err := d.store.Dropped(ctx, src.TenantID, src.SourceID, name, ver)
	if err != nil {
		return false, err
	}
	if !done {
		rec, err = d.send(ctx, src, apiKey, obj, name)
		if errors.Is(err, gateway.ErrRetryable) {
			d.log.Warn("drop: the gateway did not take a file; it stays for the next poll", "tenant_id", src.TenantID,
				"source_id", src.SourceID, "file", name, "err", err)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		rec.Name, rec.ETag = name, ver
		if err := d.store.RecordDrop(ctx, src.TenantID, src.SourceID, rec); err != nil {
			return false, err
		}
	}
	if err := d.move(ctx, obj.Key, Prefix(src.TenantID, src.SourceID)+rec.Outcome+"/"+name, rec.Report); err != nil {
		return false, err
	}
	d.log.Info("drop: file taken", "tenant_id", src.TenantID, "source_id", src.SourceID, "file", name, "outcome", rec.Outcome)
	return true, nil
}

// send posts a file and returns its outcome and report; a retryable error leaves it for the next poll.
func (d *Drop) send(ctx context.Context, src connectors.Source, apiKey string, obj *blob.ListObject, name string) (connectors.Drop, error) {
	if obj.Size > MaxFile {
		return report(Failed, fmt.Sprintf("the file has %d bytes, more than the %d a dropped file may have", obj.Size, MaxFile), nil), nil
	}
	body, err := d.bucket.ReadAll(ctx, obj.Key)
	if err != nil {
		return connectors.Drop{}, fmt.Errorf("reading: %w", err)
	}
	var ans gateway.Answer
	if isPackage(name, body) {
		ans, err = d.gw.SendPackage(ctx, apiKey, body)
	} else {
		ans, err = d.gw.SendExport(ctx, apiKey, src.SourceID, name, contentType(name), body, strings.Contains(name, ".bulk."))
	}
	if errors.Is(err, gateway.ErrRetryable) {
		return connectors.Drop{}, err
	}
	if err != nil {
		return report(Failed, err.Error(), ans.Body), nil
	}
	return report(Processed, "", ans.Body), nil
}

// report is the record of a file sent: its outcome, and as report the gateway's answer (or the reason it
// was not sent).
func report(outcome, reason string, answer []byte) connectors.Drop {
	r := map[string]any{"outcome": outcome}
	if reason != "" {
		r["error"] = reason
	}
	if json.Valid(answer) {
		r["gateway"] = json.RawMessage(answer)
	} else if len(answer) > 0 {
		r["gateway"] = string(answer)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return connectors.Drop{Outcome: outcome, Report: string(b)}
}

// isPackage reports whether a file is a OneRoster CSV package: a zip holding manifest.csv at its root.
func isPackage(name string, body []byte) bool {
	if !strings.EqualFold(path.Ext(name), ".zip") {
		return false
	}
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return false
	}
	for _, f := range zr.File {
		if f.Name == "manifest.csv" {
			return true
		}
	}
	return false
}

func contentType(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".csv":
		return "text/csv"
	case ".json":
		return "application/json"
	case ".zip":
		return "application/zip"
	}
	return "application/octet-stream"
}

// move copies a file to its folder with its report beside it, then deletes it. A crash in between leaves
// the file where it was, recorded, and the next poll moves it again.
func (d *Drop) move(ctx context.Context, from, to, rep string) error {
	if err := d.bucket.WriteAll(ctx, to+".report.json", []byte(rep), &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("writing the report %s: %w", to+".report.json", err)
	}
	if err := d.bucket.Copy(ctx, to, from, nil); err != nil {
		return fmt.Errorf("copying to %s: %w", to, err)
	}
	if err := d.bucket.Delete(ctx, from); err != nil {
		return fmt.Errorf("deleting %s: %w", from, err)
	}
	return nil
}
