// Package api holds the connector's OpenAPI 3 document: its one public endpoint, the SIS webhooks. A
// test sends real requests to the webhook handler and checks every request and answer against it.
package api

import _ "embed"

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document (YAML). The slice is shared: do not modify it.
func OpenAPI() []byte { return openAPI }
