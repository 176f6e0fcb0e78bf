package connector

import "strconv"

// The fields many types share, declared once: a type puts them in its
// Spec, and its config struct has the matching field.

// AllowHostsField is the config field every connector type accepts for
// its outbound allowlist.
const AllowHostsField = "allow_hosts"

// AllowHosts is config.allow_hosts, which every type accepts without
// declaring it: Build takes it out of the config before the type decodes
// it, into Deps.AllowHosts.
var AllowHosts = Field{
	Name: AllowHostsField,
	Kind: List,
	Description: "Hosts (`api.internal`, `*.corp.example`), addresses or CIDRs (`10.0.0.0/8`) this connector may " +
		"reach although the outbound guard refuses loopback, link-local, private and unspecified addresses. " +
		"Every type accepts it.",
	Example: []string{"api.internal", "10.0.0.0/8"},
}

// BaseURL is the base_url field of an HTTP connector: the root its
// requests are made under. def is the public API it defaults to; a type
// with none to default to passes "" and the field is required. example
// is another value worth showing (an Enterprise server, another region),
// or "". about says what this type's base URL is, and any rule of its own.
func BaseURL(def, example, about string) Field {
	f := Field{
		Name: "base_url",
		Kind: String,
		Description: about + " It must be an absolute `http`/`https` URL with no query or fragment; " +
			"a path prefix (a proxy) is kept, and a trailing `/` is ignored.",
	}
	if example != "" {
		f.Example = example
	}
	if def != "" {
		f.Default = def
		return f
	}
	f.Required = true
	f.Hint = "write an absolute http(s) URL"
	if example != "" {
		f.Hint += ", e.g. " + strconv.Quote(example)
	}
	return f
}

// MaxPages is the max_pages field of a paging connector: the most pages
// one poll reads, def by default, 1 to max. about says what happens to the
// rest (read by the next poll, or never).
func MaxPages(def, max int, about string) Field {
	return Field{
		Name:        "max_pages",
		Kind:        Int,
		Default:     def,
		Range:       Between(1, float64(max)),
		Description: join("The most pages one poll reads.", about),
	}
}

// PageSize is a paging connector's page size, under the name its API
// gives it (per_page, limit, page_limit, max_results): def by default, 1
// to max. about says anything the API adds.
func PageSize(name string, def, max int, about string) Field {
	return Field{
		Name:        name,
		Kind:        Int,
		Default:     def,
		Range:       Between(1, float64(max)),
		Description: join("How many items one request asks for.", about),
	}
}

// EmitDeletes is the emit_deletes field of a connector that reads the
// upstream's whole listing: what (an alert, an entry) is published once
// as deleted when it is gone from the listing. about says when that
// happens, or when not to set it.
func EmitDeletes(what, about string) Field {
	return Field{
		Name:    "emit_deletes",
		Kind:    Bool,
		Default: false,
		Description: join("Publish "+what+" that was in the listing and is gone once as `deleted`, with its last data. "+
			"Only a poll that read the whole listing deletes anything.", about),
	}
}

func join(a, b string) string {
	if b == "" {
		return a
	}
	return a + " " + b
}
