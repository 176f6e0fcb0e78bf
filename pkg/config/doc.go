// Package config loads and validates connectors.json, the list of
// connectors the platform polls.
//
// A file goes through these steps, all without I/O besides reading it:
//
//  0. Limits, before anything parses it (Limits): at most 16 MiB
//     (CONFIG_MAX_BYTES; a larger file is refused from its size, unread)
//     and 100 levels of nesting (CONFIG_MAX_DEPTH), so that no config can
//     make a service run out of memory, at start or on SIGHUP.
//  1. Syntax: it must be JSON, in UTF-8 (a string that is not is reported
//     with its path, never turned into U+FFFD), with no key written twice
//     in one object.
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
