// Package usgsearthquakes polls one of the USGS earthquake summary feeds
// (earthquake.usgs.gov/earthquakes/feed/v1.0/summary/<feed>.geojson). Each
// earthquake is one item; USGS bumps an event's "updated" time whenever it
// revises it, so that time is the item's version.
package usgsearthquakes

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// TypeName is the connector type in connectors.json.
const TypeName = "usgs-earthquakes"

const (
	// DefaultBaseURL is the public USGS earthquake site.
	DefaultBaseURL = "https://earthquake.usgs.gov"
	// feedPath is where the summary feeds live under base_url.
	feedPath = "/earthquakes/feed/v1.0/summary/"
	// minMagnitudeLimit bounds min_magnitude: magnitudes are small numbers,
	// and a value outside this range is a typo (an id, a depth), not a filter.
	minMagnitudeLimit = 10.0
	// timeLayout is RFC 3339 in UTC with the milliseconds USGS records.
	timeLayout = "2006-01-02T15:04:05.000Z07:00"
)

var _ connector.Factory = New

// feedRegexp is the documented set of summary feeds: a magnitude level and
// a period (geojson.php lists exactly these twenty).
const feedRegexp = `^(significant|4\.5|2\.5|1\.0|all)_(hour|day|week|month)$`

var feedPattern = regexp.MustCompile(feedRegexp)

const feedHelp = `write <level>_<period> with level one of significant, 4.5, 2.5, 1.0, all ` +
	`and period one of hour, day, week, month, e.g. "all_hour" or "significant_week"`

// Config is the "config" object of a usgs-earthquakes connector; spec
// describes its fields.
type Config struct {
	Feed         string   `json:"feed"`
	MinMagnitude *float64 `json:"min_magnitude,omitempty"`
	BaseURL      string   `json:"base_url,omitempty"`
	EmitDeletes  bool     `json:"emit_deletes,omitempty"`
}

var spec = connector.Spec{
	Summary: "One of the USGS earthquake summary feeds.",
	Fields: []connector.Field{
		{Name: "feed", Kind: connector.String, Required: true, Hint: feedHelp, Pattern: feedRegexp, Example: "all_hour",
			Description: "The summary feed, `<level>_<period>`: level `significant`, `4.5`, `2.5`, `1.0` or `all`; period " +
				"`hour`, `day`, `week` or `month`. E.g. `\"all_hour\"`, `\"4.5_day\"`, `\"significant_week\"`. These are " +
				"the twenty feeds USGS documents. A slip such as `\"All_Hour\"`, `\"all_hour.geojson\"` or the whole feed " +
				"URL is refused with the name to write instead. Request: `GET {base_url}/earthquakes/feed/v1.0/summary/{feed}.geojson`"},
		{Name: "min_magnitude", Kind: connector.Number, Range: connector.Between(-minMagnitudeLimit, minMagnitudeLimit),
			Example: 2.5, DefaultText: "none (keep all)",
			Description: "Earthquakes with a magnitude below this are left out, and so are those with no magnitude " +
				"(`mag: null`). The bound itself is kept (`2` keeps a 2.0). The filter runs on the client: the whole feed " +
				"is still downloaded, so pick the smallest feed that covers what you want (`2.5_day` rather than `all_day` " +
				"with `min_magnitude: 2.5`)."},
		connector.EmitDeletes("an earthquake", "An earthquake leaves the feed when it ages out of the feed's period, "+
			"when USGS deletes it, or when a revision puts it below `min_magnitude`."),
		connector.BaseURL(DefaultBaseURL, "", "The site root: a mirror, a proxy or a test server."),
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	c.BaseURL = cmp.Or(c.BaseURL, DefaultBaseURL)
}

// Validate reports every problem the spec cannot tell. It does no I/O.
func (c Config) Validate() error {
	_, err := upstream.ParseBaseURL("config.base_url", c.BaseURL, DefaultBaseURL)
	return errors.Join(validateFeed(c.Feed), err)
}

func validateFeed(feed string) error {
	if strings.TrimSpace(feed) == "" || feedPattern.MatchString(feed) {
		return nil
	}
	// Common slips: a URL or file name, upper case, "4.5_Day", spaces.
	fixed := strings.ToLower(strings.TrimSpace(feed))
	fixed = fixed[strings.LastIndex(fixed, "/")+1:]
	fixed = strings.TrimSuffix(fixed, ".geojson")
	if feedPattern.MatchString(fixed) {
		return fmt.Errorf("config.feed: %q is not a USGS summary feed name (write %q)", feed, fixed)
	}
	return fmt.Errorf("config.feed: %q is not a USGS summary feed name (%s)", feed, feedHelp)
}

// New builds a usgs-earthquakes connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		base, _ := upstream.ParseBaseURL("config.base_url", cfg.BaseURL, DefaultBaseURL) // validated
		return &feedPoller{
			feed:         cfg.Feed,
			feedURL:      base.String() + feedPath + cfg.Feed + ".geojson",
			minMagnitude: cfg.MinMagnitude,
			deletes:      cfg.EmitDeletes,
			client:       upstream.Client(deps),
			logger:       deps.Logger,
		}, nil
	})
}

// feedPoller keeps only its config between polls; State carries the rest.
type feedPoller struct {
	feed         string
	feedURL      string
	minMagnitude *float64
	deletes      bool
	client       *http.Client
	logger       *slog.Logger
}

// Poll reads the whole feed. A summary feed is one document (no pages), so
// the request is conditional and a 304 ends the poll with nothing to do.
// Cursor is not used and is passed through unchanged.
func (p *feedPoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	prefix := "usgs " + p.feed
	answer, err := upstream.Fetch(ctx, p.client, upstream.Request{
		URL:        p.feedURL,
		Header:     http.Header{"Accept": {"application/geo+json, application/json;q=0.9"}},
		Validators: state,
	})
	if err != nil {
		return connector.Result{}, fmt.Errorf("%s: %w", prefix, err)
	}
	if answer.NotModified {
		return connector.Result{NotModified: true, State: state}, nil
	}
	parsed, err := parseFeed(answer.Body, p.minMagnitude)
	if err != nil {
		return connector.Result{}, fmt.Errorf("%s: %w%s", prefix, err, answer.ContentType())
	}
	if parsed.skipped > 0 {
		p.logger.DebugContext(ctx, "usgs earthquakes below min_magnitude left out",
			"feed", p.feed, "skipped", parsed.skipped, "min_magnitude", *p.minMagnitude)
	}
	// A summary feed is one document: every poll reads it whole.
	return connector.Result{Items: parsed.items, Failed: parsed.failed, State: answer.State(state), Complete: p.deletes}, nil
}

// Earthquake is an item's Data. Values USGS leaves null are left out, except
// magnitude, which is always present (null when USGS has none yet).
type Earthquake struct {
	ID           string   `json:"id"`
	Magnitude    *float64 `json:"magnitude"`
	MagType      string   `json:"mag_type,omitempty"`
	Place        string   `json:"place,omitempty"`
	Time         string   `json:"time,omitempty"`
	Updated      string   `json:"updated"`
	URL          string   `json:"url,omitempty"`
	Detail       string   `json:"detail,omitempty"`
	Status       string   `json:"status,omitempty"`
	Tsunami      bool     `json:"tsunami"`
	Alert        string   `json:"alert,omitempty"`
	Felt         *int64   `json:"felt,omitempty"`
	Significance *int64   `json:"significance,omitempty"`
	Type         string   `json:"type,omitempty"`
	Title        string   `json:"title,omitempty"`
	Longitude    *float64 `json:"longitude,omitempty"`
	Latitude     *float64 `json:"latitude,omitempty"`
	DepthKM      *float64 `json:"depth_km,omitempty"`
}

type featureCollection struct {
	Type     string            `json:"type"`
	Features []json.RawMessage `json:"features"`
}

type feature struct {
	ID         string `json:"id"`
	Properties struct {
		Mag     *float64 `json:"mag"`
		MagType string   `json:"magType"`
		Place   string   `json:"place"`
		Time    *int64   `json:"time"`
		Updated *int64   `json:"updated"`
		URL     string   `json:"url"`
		Detail  string   `json:"detail"`
		Status  string   `json:"status"`
		Tsunami *int64   `json:"tsunami"`
		Alert   string   `json:"alert"`
		Felt    *int64   `json:"felt"`
		Sig     *int64   `json:"sig"`
		Type    string   `json:"type"`
		Title   string   `json:"title"`
	} `json:"properties"`
	Geometry *struct {
		Coordinates []float64 `json:"coordinates"`
	} `json:"geometry"`
}

type parsedFeed struct {
	items   []connector.Item
	failed  []connector.ItemError
	skipped int
}

// parseFeed turns a GeoJSON FeatureCollection into items, leaving out the
// earthquakes below minMagnitude when it is set.
func parseFeed(body []byte, minMagnitude *float64) (parsedFeed, error) {
	var fc featureCollection
	if err := upstream.DecodeJSON(body, &fc); err != nil {
		return parsedFeed{}, err
	}
	if fc.Type != "FeatureCollection" {
		return parsedFeed{}, fmt.Errorf("response is not a GeoJSON FeatureCollection (type %q)", fc.Type)
	}
	if fc.Features == nil {
		return parsedFeed{}, errors.New(`response is not a GeoJSON FeatureCollection (no "features" array)`)
	}
	out := parsedFeed{items: make([]connector.Item, 0, len(fc.Features))}
	for i, raw := range fc.Features {
		var f feature
		if err := json.Unmarshal(raw, &f); err != nil {
			out.failed = append(out.failed, connector.ItemError{
				ID:  cmp.Or(idOf(raw), fmt.Sprintf("features[%d]", i)),
				Err: fmt.Errorf("not a USGS earthquake feature: %w", err),
			})
			continue
		}
		if minMagnitude != nil && (f.Properties.Mag == nil || *f.Properties.Mag < *minMagnitude) {
			out.skipped++
			continue
		}
		item, err := toItem(f)
		if err != nil {
			out.failed = append(out.failed, connector.ItemError{ID: cmp.Or(f.ID, fmt.Sprintf("features[%d]", i)), Err: err})
			continue
		}
		out.items = append(out.items, item)
	}
	return out, nil
}

func toItem(f feature) (connector.Item, error) {
	props := f.Properties
	switch {
	case f.ID == "" && props.Updated == nil:
		return connector.Item{}, errors.New("earthquake has neither an id nor properties.updated")
	case f.ID == "":
		return connector.Item{}, errors.New("earthquake has no feature id")
	case props.Updated == nil:
		return connector.Item{}, errors.New("earthquake has no properties.updated, so its revisions cannot be told apart")
	}
	quake := Earthquake{
		ID:           f.ID,
		Magnitude:    props.Mag,
		MagType:      props.MagType,
		Place:        props.Place,
		Updated:      formatMillis(*props.Updated),
		URL:          props.URL,
		Detail:       props.Detail,
		Status:       props.Status,
		Tsunami:      props.Tsunami != nil && *props.Tsunami != 0,
		Alert:        props.Alert,
		Felt:         props.Felt,
		Significance: props.Sig,
		Type:         props.Type,
		Title:        props.Title,
	}
	if props.Time != nil {
		quake.Time = formatMillis(*props.Time)
	}
	if f.Geometry != nil {
		// GeoJSON order: longitude, latitude, depth (km, positive down).
		coords := f.Geometry.Coordinates
		if len(coords) >= 2 {
			quake.Longitude, quake.Latitude = &coords[0], &coords[1]
		}
		if len(coords) >= 3 {
			quake.DepthKM = &coords[2]
		}
	}
	data, err := json.Marshal(quake)
	if err != nil {
		return connector.Item{}, fmt.Errorf("encode earthquake: %w", err)
	}
	return connector.Item{ID: f.ID, Version: strconv.FormatInt(*props.Updated, 10), Data: data}, nil
}

func formatMillis(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(timeLayout)
}

// idOf names a feature that did not decode, when its id can still be read.
func idOf(raw json.RawMessage) string {
	var ids struct {
		ID any `json:"id"`
	}
	_ = json.Unmarshal(raw, &ids)
	s, _ := ids.ID.(string)
	return s
}
