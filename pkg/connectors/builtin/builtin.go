// Package builtin is the one place where pollgrid's built-in connector types
// are registered. Add a new type here, and entries for it in
// conformance_test.go and spec_test.go (the tests fail without them).
//
// The docs the types' config specs describe (each README's field table,
// docs/connectors.schema.json, the config reference) are written by
// TestGeneratedDocs with -update, which go generate runs (make docs); the
// same test fails when they drift.
package builtin

//go:generate go test -run ^TestGeneratedDocs$ -count=1 . -args -update

import (
	"github.com/pollgrid/pollgrid/pkg/connector"
	datadogevents "github.com/pollgrid/pollgrid/pkg/connectors/datadog-events"
	"github.com/pollgrid/pollgrid/pkg/connectors/demo"
	"github.com/pollgrid/pollgrid/pkg/connectors/feed"
	githubissues "github.com/pollgrid/pollgrid/pkg/connectors/github-issues"
	githubreleases "github.com/pollgrid/pollgrid/pkg/connectors/github-releases"
	httpjson "github.com/pollgrid/pollgrid/pkg/connectors/http-json"
	jiraissues "github.com/pollgrid/pollgrid/pkg/connectors/jira-issues"
	slackhistory "github.com/pollgrid/pollgrid/pkg/connectors/slack-history"
	usgsearthquakes "github.com/pollgrid/pollgrid/pkg/connectors/usgs-earthquakes"
	weathernoaa "github.com/pollgrid/pollgrid/pkg/connectors/weather-noaa"
)

// Registry returns a registry holding every built-in type.
func Registry() *connector.Registry {
	r := connector.NewRegistry()
	r.Register(weathernoaa.TypeName, weathernoaa.New)
	r.Register(usgsearthquakes.TypeName, usgsearthquakes.New)
	r.Register(githubreleases.TypeName, githubreleases.New)
	r.Register(githubissues.TypeName, githubissues.New)
	r.Register(jiraissues.TypeName, jiraissues.New)
	r.Register(feed.TypeName, feed.New)
	r.Register(slackhistory.TypeName, slackhistory.New)
	r.Register(datadogevents.TypeName, datadogevents.New)
	r.Register(httpjson.TypeName, httpjson.New)
	r.Register(demo.TypeName, demo.New)
	return r
}
