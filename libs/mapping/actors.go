package mapping

import (
	"fmt"
	"strings"
)

// Actors says where a source's learning-standard events carry the district's SIS id of the person
// acting (the rules document's optional `actors` section); empty fields take each reader's default order.
//
//   - XAPI: `account` (account.name), `mbox` (the address without mailto:), `mbox_local` (the address's
//     part before the @), `openid`;
//   - Caliper: `identifier:<type>` (the person's otherIdentifiers entry of that identifierType, e.g.
//     identifier:SisSourcedId), `iri_last_segment`, `iri`.
type Actors struct {
	XAPI    string `yaml:"xapi"`
	Caliper string `yaml:"caliper"`
}

// XAPIActorRules and CaliperActorRules are the rules Actors may name (identifier: takes a type).
var (
	XAPIActorRules    = []string{"account", "mbox", "mbox_local", "openid"}
	CaliperActorRules = []string{"identifier:<type>", "iri_last_segment", "iri"}
)

// Actors returns the rules' actors section (zero when it has none).
func (r *Rules) Actors() Actors { return r.actors }

func (c *compiler) actors(a *Actors) {
	if a == nil {
		return
	}
	switch a.XAPI {
	case "", "account", "mbox", "mbox_local", "openid":
	default:
		c.errs = append(c.errs, fmt.Errorf("%w: actors.xapi: %q is not one of %s", ErrInvalidRules, a.XAPI, strings.Join(XAPIActorRules, ", ")))
	}
	switch t, isIdentifier := strings.CutPrefix(a.Caliper, "identifier:"); {
	case a.Caliper == "", a.Caliper == "iri_last_segment", a.Caliper == "iri", isIdentifier && t != "":
	default:
		c.errs = append(c.errs, fmt.Errorf("%w: actors.caliper: %q is not one of %s", ErrInvalidRules, a.Caliper, strings.Join(CaliperActorRules, ", ")))
	}
}
