package weathernoaa

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/connector"
	polite "github.com/pollgrid/pollgrid/pkg/upstream"
)

// Config is the "config" object of a weather-noaa connector; spec
// describes its fields. Exactly one of Area, Zone and Point selects what
// to watch.
type Config struct {
	Area        string `json:"area,omitempty"`
	Zone        string `json:"zone,omitempty"`
	Point       string `json:"point,omitempty"`
	UserAgent   string `json:"user_agent"`
	BaseURL     string `json:"base_url,omitempty"`
	MaxPages    *int   `json:"max_pages,omitempty"`
	EmitDeletes bool   `json:"emit_deletes,omitempty"`
}

var spec = connector.Spec{
	Summary: "The active NWS weather alerts of one area, zone or point (api.weather.gov). Set exactly one of area, zone and point.",
	Fields: []connector.Field{
		{Name: "area", Kind: connector.String, Example: "CA",
			Description: "Two-letter state, territory or marine area code, uppercase: `\"CA\"`, `\"PR\"`, `\"PZ\"`. It must be a " +
				"code from the NWS API's `StateTerritoryCode` or `MarineAreaCode` list. Request: `GET {base_url}/alerts/active?area=CA`"},
		{Name: "zone", Kind: connector.String, Pattern: zoneRegexp, Example: "ORZ004",
			Description: "NWS zone or county id, matching `" + zoneRegexp + "`: `\"ORZ004\"` (forecast/fire/marine zone) or " +
				"`\"WAC033\"` (county). Request: `GET {base_url}/alerts/active/zone/ORZ004`"},
		{Name: "point", Kind: connector.String, Example: "33.25,-112.3",
			Description: "`\"lat,lon\"` in decimal degrees. Latitude is -90..90 and longitude -180..180. Each can have at most " +
				"**4 decimals**, because NWS answers a more precise point with a redirect (`AdjustPointPrecision`). Spaces " +
				"around the numbers are removed. Request: `GET {base_url}/alerts/active?point=33.25,-112.3`"},
		{Name: "user_agent", Kind: connector.String, Required: true, Example: userAgentExample[1 : len(userAgentExample)-1],
			Hint: "NWS rejects requests without a User-Agent (HTTP 403); name your app and a contact, e.g. " + userAgentExample,
			Description: "Sent as `User-Agent` on every request: name your app and a contact. NWS answers 403 without " +
				"one (the README says why)."},
		connector.BaseURL(DefaultBaseURL, "", "The API root: a mirror, a proxy or a test server. Pagination never leaves its scheme and host."),
		connector.MaxPages(DefaultMaxPages, maxMaxPages, "Pages are followed by `pagination.next`."),
		connector.EmitDeletes("an alert", "An alert leaves the active listing when it expires, or is cancelled and dropped."),
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	c.BaseURL = cmp.Or(c.BaseURL, DefaultBaseURL)
	connector.SetDefault(&c.MaxPages, DefaultMaxPages)
}

// Validate reports every problem the spec cannot tell. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	var set []string
	if c.Area != "" {
		set = append(set, "area")
		errs = append(errs, validateArea(c.Area))
	}
	if c.Zone != "" {
		set = append(set, "zone")
		errs = append(errs, validateZone(c.Zone))
	}
	if c.Point != "" {
		set = append(set, "point")
		_, err := normalizePoint(c.Point)
		errs = append(errs, err)
	}
	if len(set) != 1 {
		errs = append(errs, fmt.Errorf("config: set exactly one of area, zone or point (got %s)", listNames(set)))
	}
	errs = append(errs, validateUserAgent(c.UserAgent))
	_, err := polite.ParseBaseURL("config.base_url", c.BaseURL, DefaultBaseURL)
	errs = append(errs, err)
	return errors.Join(errs...)
}

// areaCodes are the NWS OpenAPI's StateTerritoryCode and MarineAreaCode enums.
var areaCodes = []string{
	"AL", "AK", "AS", "AR", "AZ", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "GU", "HI", "ID", "IL",
	"IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH",
	"NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "PR", "RI", "SC", "SD", "TN", "TX", "UT",
	"VT", "VI", "VA", "WA", "WV", "WI", "WY", "MP", "PW", "FM", "MH",
	"AM", "AN", "GM", "LC", "LE", "LH", "LM", "LO", "LS", "PH", "PK", "PM", "PS", "PZ", "SL",
}

func validateArea(area string) error {
	if slices.Contains(areaCodes, area) {
		return nil
	}
	if fixed := strings.ToUpper(strings.TrimSpace(area)); slices.Contains(areaCodes, fixed) {
		return fmt.Errorf("config.area: %q is not an NWS area code (write %q: codes are two uppercase letters)", area, fixed)
	}
	return fmt.Errorf(`config.area: %q is not an NWS area code (write a state or territory such as "CA", or a marine area such as "PZ")`, area)
}

const zoneRegexp = `^[A-Z]{2}[CZ]\d{3}$`

var zonePattern = regexp.MustCompile(zoneRegexp)

func validateZone(zone string) error {
	if zonePattern.MatchString(zone) {
		return nil
	}
	if fixed := strings.ToUpper(strings.TrimSpace(zone)); zonePattern.MatchString(fixed) {
		return fmt.Errorf("config.zone: %q is not an NWS zone id (write %q)", zone, fixed)
	}
	return fmt.Errorf(`config.zone: %q is not an NWS zone id (write e.g. "ORZ004")`, zone)
}

var coordinatePattern = regexp.MustCompile(`^-?\d+(\.\d+)?$`)

// normalizePoint checks "lat,lon" and returns it without spaces, as NWS
// wants it in the query.
func normalizePoint(point string) (string, error) {
	latText, lonText, ok := strings.Cut(point, ",")
	latText, lonText = strings.TrimSpace(latText), strings.TrimSpace(lonText)
	if !ok || !coordinatePattern.MatchString(latText) || !coordinatePattern.MatchString(lonText) {
		return "", fmt.Errorf(`config.point: %q is not "lat,lon" in decimal degrees (write e.g. "33.25,-112.3")`, point)
	}
	lat, _ := strconv.ParseFloat(latText, 64)
	lon, _ := strconv.ParseFloat(lonText, 64)
	var errs []error
	if lat < -90 || lat > 90 {
		errs = append(errs, fmt.Errorf("config.point: latitude %s is out of range (write a number from -90 to 90)", latText))
	}
	if lon < -180 || lon > 180 {
		errs = append(errs, fmt.Errorf("config.point: longitude %s is out of range (write a number from -180 to 180)", lonText))
	}
	if decimals(latText) > 4 || decimals(lonText) > 4 {
		errs = append(errs, fmt.Errorf("config.point: %q has more than 4 decimals, which NWS answers with a redirect (write %q)",
			point, roundCoordinate(lat)+","+roundCoordinate(lon)))
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return latText + "," + lonText, nil
}

func decimals(number string) int {
	_, frac, _ := strings.Cut(number, ".")
	return len(frac)
}

func roundCoordinate(v float64) string {
	s := strconv.FormatFloat(v, 'f', 4, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

func validateUserAgent(ua string) error {
	if strings.ContainsFunc(ua, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("config.user_agent: must be one line without control characters (write e.g. %s)", userAgentExample)
	}
	return nil
}

func listNames(names []string) string {
	switch len(names) {
	case 0:
		return "none"
	case 1:
		return names[0]
	default:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
}
