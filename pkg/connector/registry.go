package connector

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Registry maps type names to factories. Built-in types are registered in one
// place (package connectors/builtin); registering a name twice panics at
// start-up, because two types fighting over a name is a programming error.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{}}
}

// Register adds a type. It panics on an empty or duplicate name.
func (r *Registry) Register(typeName string, f Factory) {
	if typeName == "" || f == nil {
		panic("connector: Register needs a type name and a factory")
	}
	if _, dup := r.factories[typeName]; dup {
		panic(fmt.Sprintf("connector: type %q registered twice", typeName))
	}
	r.factories[typeName] = f
}

// Types lists the registered type names, sorted.
func (r *Registry) Types() []string {
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Known reports whether typeName is registered.
func (r *Registry) Known(typeName string) bool {
	_, ok := r.factories[typeName]
	return ok
}

// New builds a connector of the named type.
func (r *Registry) New(typeName string, raw json.RawMessage, deps Deps) (Connector, error) {
	f, ok := r.factories[typeName]
	if !ok {
		return nil, fmt.Errorf("unknown connector type %q (known: %v)", typeName, r.Types())
	}
	return f(raw, deps)
}

// Validate decodes and validates a type-specific config without I/O. A
// factory written with Build stops there; any other builds a connector and
// drops it.
func (r *Registry) Validate(typeName string, raw json.RawMessage) error {
	return r.ValidateDecoded(typeName, raw, nil)
}

// ValidateDecoded is Validate for a caller that holds the config decoded
// already, as raw encodes it (numbers as json.Number): a factory written
// with Build checks decoded against its Spec instead of decoding raw
// again, then decodes raw into its config type. A config file's checker
// decodes each connector once this way. A nil decoded is Validate.
func (r *Registry) ValidateDecoded(typeName string, raw json.RawMessage, decoded map[string]any) error {
	_, err := r.New(typeName, raw, Deps{validating: true, decoded: decoded})
	return err
}

// Spec returns the config Spec of the named type, with the fields every
// type shares (Spec.WithShared). It is false for an unknown type, and for
// a type whose factory is not written with Build, which has none.
func (r *Registry) Spec(typeName string) (Spec, bool) {
	f, ok := r.factories[typeName]
	if !ok {
		return Spec{}, false
	}
	var d described
	if _, err := f(nil, Deps{describe: &d}); err != nil || !d.ok {
		return Spec{}, false
	}
	return d.spec, true
}
