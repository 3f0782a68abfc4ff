// Package api holds the gateway's OpenAPI 3 document, the contract of its public HTTP API. The gateway
// serves it at GET /openapi.yaml, and a test sends real requests through the gateway and checks every
// request and answer against it.
package api

import _ "embed"

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document (YAML). The slice is shared: do not modify it.
func OpenAPI() []byte { return openAPI }
