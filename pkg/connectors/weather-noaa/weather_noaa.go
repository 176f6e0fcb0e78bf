// Package weathernoaa polls the active weather alerts of the US National
// Weather Service (api.weather.gov) for one area, zone or point. Each alert
// message is one item, published once: NWS never changes a sent alert. An
// update or a cancellation is a new alert (messageType "Update" or "Cancel")
// whose references name the alerts it replaces; the item carries them as
// "supersedes", so a consumer can follow the thread.
package weathernoaa

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/connector"
	// Aliased: the tests use the name upstream for their fake NWS server.
	polite "github.com/pollgrid/pollgrid/pkg/upstream"
)

// TypeName is the connector type in connectors.json.
const TypeName = "weather-noaa"

const (
	// DefaultBaseURL is the public NWS API.
	DefaultBaseURL = "https://api.weather.gov"
	// DefaultMaxPages bounds how many pagination.next links one poll follows.
	DefaultMaxPages = 10
	// maxMaxPages keeps a misconfigured connector from hammering NWS.
	maxMaxPages = 100
	// maxDetailRunes keeps an upstream detail from flooding logs and reports.
	maxDetailRunes = 300
	// userAgentExample is what the error texts suggest.
	userAgentExample = `"(myapp, ops@example.com)"`
)

var _ connector.Factory = New

// New builds a weather-noaa connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		base, _ := polite.ParseBaseURL("config.base_url", cfg.BaseURL, DefaultBaseURL) // validated
		firstURL := base.String() + "/alerts/active"
		switch {
		case cfg.Area != "":
			firstURL += "?area=" + cfg.Area
		case cfg.Zone != "":
			firstURL += "/zone/" + cfg.Zone
		default:
			point, _ := normalizePoint(cfg.Point)
			// Written by hand, not with url.Values: the comma stays a comma, as in
			// NWS's own examples. Validation allows only digits, '-', '.' and ','.
			firstURL += "?point=" + point
		}
		return &alertPoller{
			header:   http.Header{"User-Agent": {cfg.UserAgent}, "Accept": {"application/geo+json"}},
			base:     base,
			firstURL: firstURL,
			maxPages: *cfg.MaxPages,
			deletes:  cfg.EmitDeletes,
			client:   polite.Client(deps),
			logger:   deps.Logger,
		}, nil
	})
}

// alertPoller keeps only its config between polls; State carries the rest.
type alertPoller struct {
	header   http.Header
	base     *url.URL
	firstURL string
	maxPages int
	deletes  bool
	client   *http.Client
	logger   *slog.Logger
}

// Poll reads every page of the active alerts. Only the first request is
// conditional; its 304 ends the poll with nothing to do.
func (p *alertPoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	result := connector.Result{State: connector.State{Cursor: state.Cursor}}
	position := 0
	pageURL := p.firstURL
	pages := polite.NewPages(p.maxPages, pageURL)
	for page := 1; ; page++ {
		prefix := "nws alerts"
		request := polite.Request{URL: pageURL, Header: p.header, Explain: explain}
		if page == 1 {
			request.Validators = state
		} else {
			prefix = fmt.Sprintf("nws alerts (page %d)", page)
		}
		answer, err := polite.Fetch(ctx, p.client, request)
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: %w", prefix, err)
		}
		if answer.NotModified {
			return connector.Result{NotModified: true, State: state}, nil
		}
		if page == 1 {
			result.State = answer.State(result.State)
		}
		parsed, err := parsePage(answer.Body, position)
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: %w%s", prefix, err, answer.ContentType())
		}
		result.Items = append(result.Items, parsed.items...)
		result.Failed = append(result.Failed, parsed.failed...)
		position += parsed.features

		if parsed.next == "" {
			result.Complete = p.deletes // every page read: the listing is whole
			return result, nil
		}
		next, err := polite.NextPage(answer.URL, parsed.next, p.base, "config.base_url")
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: pagination.next: %w", prefix, err)
		}
		if err := pages.Next(next.String()); err != nil {
			// A loop would repeat the same alerts forever; past max_pages
			// the rest waits for a later poll. Either way, what was read stands.
			p.logger.WarnContext(ctx, "nws alerts: stopping pagination with what was read", "page", page, "reason", err.Error())
			return result, nil
		}
		pageURL = next.String()
	}
}

// explain words an NWS error from its RFC 7807 problem+json body.
func explain(e *polite.StatusError) {
	var problem struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(e.Body, &problem) == nil {
		title, detail := polite.OneLine(problem.Title, maxDetailRunes), polite.OneLine(problem.Detail, maxDetailRunes)
		var parts []string
		if title != "" && !strings.EqualFold(title, http.StatusText(e.StatusCode)) {
			parts = append(parts, title)
		}
		if detail != "" && detail != title {
			parts = append(parts, detail)
		}
		e.Message = strings.Join(parts, ": ")
		if e.Message == "" {
			e.Snippet = "" // the body said nothing the status does not
		}
	}
	switch e.StatusCode {
	case http.StatusForbidden:
		e.Hint = "NWS answers 403 to a missing or blocked User-Agent; check config.user_agent"
	case http.StatusTooManyRequests:
		e.Hint = "rate limited; NWS says the limit clears within about 5 seconds"
	}
}

// Alert is an item's Data: the NWS alert properties in snake_case. Text and
// time fields NWS leaves null or empty are left out; times are the RFC 3339
// strings NWS sends, with their offsets.
type Alert struct {
	ID          string `json:"id"`
	URL         string `json:"url,omitempty"`
	Event       string `json:"event,omitempty"`
	Headline    string `json:"headline,omitempty"`
	Description string `json:"description,omitempty"`
	Instruction string `json:"instruction,omitempty"`
	Severity    string `json:"severity,omitempty"`
	Certainty   string `json:"certainty,omitempty"`
	Urgency     string `json:"urgency,omitempty"`
	Status      string `json:"status,omitempty"`
	MessageType string `json:"message_type,omitempty"`
	Category    string `json:"category,omitempty"`
	Response    string `json:"response,omitempty"`
	AreaDesc    string `json:"area_desc,omitempty"`
	SenderName  string `json:"sender_name,omitempty"`
	Sent        string `json:"sent"`
	Effective   string `json:"effective,omitempty"`
	Onset       string `json:"onset,omitempty"`
	Expires     string `json:"expires,omitempty"`
	Ends        string `json:"ends,omitempty"`
	// AffectedZones are zone URLs as NWS gives them; never null.
	AffectedZones []string `json:"affected_zones"`
	// Supersedes are the ids of the earlier alerts this one updates
	// (MessageType "Update") or cancels ("Cancel"), from NWS's references:
	// those are no longer current. Never null. NWS names only the alerts
	// it replaces directly, so a thread is followed link by link.
	Supersedes []string `json:"supersedes"`
	// Geocode is NWS's object as given (UGC and SAME code lists).
	Geocode     json.RawMessage `json:"geocode,omitempty"`
	HasGeometry bool            `json:"has_geometry"`
}

type featureCollection struct {
	Type       string            `json:"type"`
	Features   []json.RawMessage `json:"features"`
	Pagination *struct {
		Next string `json:"next"`
	} `json:"pagination"`
}

type feature struct {
	ID         string          `json:"id"`
	Geometry   json.RawMessage `json:"geometry"`
	Properties struct {
		AtID          string          `json:"@id"`
		ID            string          `json:"id"`
		AreaDesc      string          `json:"areaDesc"`
		Geocode       json.RawMessage `json:"geocode"`
		AffectedZones []string        `json:"affectedZones"`
		References    []struct {
			AtID       string `json:"@id"`
			Identifier string `json:"identifier"`
		} `json:"references"`
		Sent        string `json:"sent"`
		Effective   string `json:"effective"`
		Onset       string `json:"onset"`
		Expires     string `json:"expires"`
		Ends        string `json:"ends"`
		Status      string `json:"status"`
		MessageType string `json:"messageType"`
		Category    string `json:"category"`
		Severity    string `json:"severity"`
		Certainty   string `json:"certainty"`
		Urgency     string `json:"urgency"`
		Event       string `json:"event"`
		SenderName  string `json:"senderName"`
		Headline    string `json:"headline"`
		Description string `json:"description"`
		Instruction string `json:"instruction"`
		Response    string `json:"response"`
	} `json:"properties"`
}

type parsedPage struct {
	items    []connector.Item
	failed   []connector.ItemError
	features int
	next     string
}

// parsePage turns one FeatureCollection into items. firstPosition numbers the
// features across pages, so "features[3]" names one feature of the whole poll.
func parsePage(body []byte, firstPosition int) (parsedPage, error) {
	var fc featureCollection
	if err := json.Unmarshal(body, &fc); err != nil {
		if _, syntax := errors.AsType[*json.SyntaxError](err); syntax {
			return parsedPage{}, fmt.Errorf("response is not JSON: %w", err)
		}
		return parsedPage{}, fmt.Errorf("response is not a GeoJSON FeatureCollection: %w", err)
	}
	if fc.Type != "FeatureCollection" {
		return parsedPage{}, fmt.Errorf("response is not a GeoJSON FeatureCollection (type %q)", fc.Type)
	}
	if fc.Features == nil {
		return parsedPage{}, errors.New(`response is not a GeoJSON FeatureCollection (no "features" array)`)
	}
	out := parsedPage{features: len(fc.Features), items: make([]connector.Item, 0, len(fc.Features))}
	if fc.Pagination != nil {
		out.next = fc.Pagination.Next
	}
	for i, raw := range fc.Features {
		item, err := toItem(raw)
		if err != nil {
			if err.ID == "" {
				err.ID = fmt.Sprintf("features[%d]", firstPosition+i)
			}
			out.failed = append(out.failed, *err)
			continue
		}
		out.items = append(out.items, item)
	}
	return out, nil
}

// toItem returns an ItemError with an empty ID when the feature has no id.
func toItem(raw json.RawMessage) (connector.Item, *connector.ItemError) {
	var f feature
	if err := json.Unmarshal(raw, &f); err != nil {
		return connector.Item{}, &connector.ItemError{ID: idOf(raw), Err: fmt.Errorf("not an NWS alert feature: %w", err)}
	}
	props := f.Properties
	id := props.ID
	if id == "" {
		id = f.ID
	}
	switch {
	case id == "" && props.Sent == "":
		return connector.Item{}, &connector.ItemError{Err: errors.New("alert has neither an id nor a sent time")}
	case id == "":
		return connector.Item{}, &connector.ItemError{Err: errors.New("alert has no properties.id or feature id")}
	case props.Sent == "":
		return connector.Item{}, &connector.ItemError{ID: id, Err: errors.New("alert has no properties.sent, so its versions cannot be told apart")}
	}
	alert := Alert{
		ID:            id,
		URL:           f.ID,
		Event:         props.Event,
		Headline:      props.Headline,
		Description:   props.Description,
		Instruction:   props.Instruction,
		Severity:      props.Severity,
		Certainty:     props.Certainty,
		Urgency:       props.Urgency,
		Status:        props.Status,
		MessageType:   props.MessageType,
		Category:      props.Category,
		Response:      props.Response,
		AreaDesc:      props.AreaDesc,
		SenderName:    props.SenderName,
		Sent:          props.Sent,
		Effective:     props.Effective,
		Onset:         props.Onset,
		Expires:       props.Expires,
		Ends:          props.Ends,
		AffectedZones: props.AffectedZones,
		Supersedes:    make([]string, 0, len(props.References)),
		HasGeometry:   !isNull(f.Geometry),
	}
	if alert.URL == "" {
		alert.URL = props.AtID
	}
	if alert.AffectedZones == nil {
		alert.AffectedZones = []string{}
	}
	for _, ref := range props.References {
		if refID := cmp.Or(ref.Identifier, ref.AtID); refID != "" {
			alert.Supersedes = append(alert.Supersedes, refID)
		}
	}
	if !isNull(props.Geocode) {
		alert.Geocode = props.Geocode
	}
	data, err := json.Marshal(alert)
	if err != nil {
		return connector.Item{}, &connector.ItemError{ID: id, Err: fmt.Errorf("encode alert: %w", err)}
	}
	return connector.Item{ID: id, Version: props.Sent, Data: data}, nil
}

// idOf names a feature that did not decode, when its id can still be read.
func idOf(raw json.RawMessage) string {
	var ids struct {
		ID         any `json:"id"`
		Properties struct {
			ID any `json:"id"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(raw, &ids)
	for _, v := range []any{ids.Properties.ID, ids.ID} {
		if s, ok := v.(string); ok && s != "" {
			return s
		}
	}
	return ""
}

func isNull(raw json.RawMessage) bool {
	trimmed := strings.TrimSpace(string(raw))
	return trimmed == "" || trimmed == "null"
}
