// Package builtin is the one place where pollgrid's built-in connector types
// are registered. Add a new type here, and an entry for it in
// conformance_test.go (the test fails without one).
package builtin

import (
	"github.com/pollgrid/pollgrid/pkg/connector"
	datadogevents "github.com/pollgrid/pollgrid/pkg/connectors/datadog-events"
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
	return r
}
