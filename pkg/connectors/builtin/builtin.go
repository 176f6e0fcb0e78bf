// Package builtin is the one place where pollgrid's built-in connector types
// are registered. Add a new type here.
package builtin

import (
	"github.com/pollgrid/pollgrid/pkg/connector"
	weathernoaa "github.com/pollgrid/pollgrid/pkg/connectors/weather-noaa"
)

// Registry returns a registry holding every built-in type.
func Registry() *connector.Registry {
	r := connector.NewRegistry()
	r.Register(weathernoaa.TypeName, weathernoaa.New)
	return r
}
