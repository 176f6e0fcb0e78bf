package upstream

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nginxBadGateway is nginx's own 502 page (ngx_http_special_response.c),
// what a reverse proxy answers when the API behind it is down.
const nginxBadGateway = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" +
	"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

// cdnPage is a CDN's error page: a head full of style and script, the words
// in the middle, and a long tail of links.
var cdnPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>api.example.com | 503: Service unavailable</title>
<style>body { font-family: sans-serif } h1 { color: #c00 }</style>
<script>window.dataLayer = window.dataLayer || []; if (a < b && c > d) { gtag("config") }</script>
</head><body><!-- error page v2 -->
<h1>Service unavailable</h1>
<p>The origin server is down for maintenance &amp; will be back soon.</p>
<p>Ray ID: 7d1e2f3a4b5c6d7e &bull; <a href="/status">status page</a></p>
` + strings.Repeat(`<div class="footer"><a href="/help">Help</a> <a href="/privacy">Privacy</a></div>`+"\n", 500) + `</body></html>`

// A 5xx answered with an HTML page fails the poll with the page's words,
// short, and none of its markup, script or style: the error is kept in the
// state, shown by list and status, and logged with every poll.
func TestAnHTMLErrorPageIsReducedToItsText(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		status      int
		body        string
		want        string
	}{
		{name: "nginx's 502: only what the status does not say", contentType: "text/html", status: http.StatusBadGateway, body: nginxBadGateway,
			want: `upstream answered 502 Bad Gateway: an HTML page: "nginx"`},
		{name: "a CDN's page: title and first words, entities decoded, the heading that repeats the status left out", contentType: "text/html; charset=UTF-8", status: http.StatusServiceUnavailable, body: cdnPage,
			want: `upstream answered 503 Service Unavailable: an HTML page: "api.example.com | 503: Service unavailable — The origin server is down for maintenance & will be back soon. Ray ID: 7d1e2f3a4b5c6d7e • status page Help Privacy ..."`},
		{name: "an HTML page without a Content-Type is sniffed", contentType: "", status: http.StatusInternalServerError, body: "<!DOCTYPE html><html><body><p>Internal error</p></body></html>",
			want: `upstream answered 500 Internal Server Error: an HTML page: "Internal error"`},
		{name: "a proxy's page under the API's JSON type is sniffed", contentType: "application/json", status: http.StatusGatewayTimeout, body: nginxBadGateway,
			want: `upstream answered 504 Gateway Timeout: an HTML page: "502 Bad Gateway — nginx"`},
		{name: "a page without words", contentType: "text/html", status: http.StatusBadGateway, body: "<html><head><title>502 Bad Gateway</title></head><body></body></html>",
			want: `upstream answered 502 Bad Gateway: an HTML page saying nothing more`},
		{name: "JSON is quoted as it was", contentType: "application/json", status: http.StatusBadGateway, body: `{"message": "<b>not</b> html"}`,
			want: `upstream answered 502 Bad Gateway: {"message": "<b>not</b> html"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing by net/http: the client sniffs
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			_, err := Fetch(t.Context(), local(Options{}), Request{URL: srv.URL})
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
			se, ok := errors.AsType[*StatusError](err)
			require.True(t, ok)
			assert.Equal(t, tt.body, string(se.Body), "connectors still read the body as sent")
			if strings.HasPrefix(tt.want, "upstream answered 5") && strings.Contains(tt.want, "an HTML page") {
				assert.NotContains(t, err.Error(), "<")
				assert.LessOrEqual(t, utf8.RuneCountInString(se.Snippet), 200, "a short length")
			}
		})
	}
}
