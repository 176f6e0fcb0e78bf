// Package config loads and validates connectors.json, the list of
// connectors the platform polls.
//
// A file goes through three steps, all without I/O besides reading it:
//
//  1. Syntax: it must be JSON, with no key written twice in one object.
//  2. Substitution: every string value of a connector may refer to the
//     environment as ${VAR} (write $${ for a literal "${"). The resolved
//     values are secrets: they are returned by Config.Secrets for a
//     redact.Redactor and never appear in an error.
//  3. Validation: universal fields (name, type, interval, ...) are checked
//     here, defaults applied, and the type-specific "config" object is
//     handed to the connector type's own Validate.
//
// Every problem found is reported at once, as *Problems, each with the
// JSON path of the field and how to fix it, so a user fixes a file in one
// pass rather than one error per restart.
package config
