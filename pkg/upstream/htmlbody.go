package upstream

import (
	"bytes"
	"mime"
	"net/http"
	"strconv"
	"strings"

	xhtml "golang.org/x/net/html"
)

// maxHTMLSnippet is how many characters of an HTML error page's text a
// StatusError quotes: a proxy's or a CDN's page says what happened in its
// title and first sentence; the rest is navigation and boilerplate.
const maxHTMLSnippet = 160

// isHTML reports whether an answer's body is an HTML page: its
// Content-Type says so, or the body looks like one whatever the header
// says (http.DetectContentType's sniffing: a proxy's page sent under the
// API's own "application/json" is still a page, and JSON never starts
// with a tag).
func isHTML(header http.Header, body []byte) bool {
	if media, _, err := mime.ParseMediaType(header.Get("Content-Type")); err == nil &&
		(media == "text/html" || media == "application/xhtml+xml") {
		return true
	}
	return strings.HasPrefix(http.DetectContentType(body), "text/html")
}

// htmlSnippet is an HTML error page as the one line an error quotes: its
// title, then the text of its body, without markup, scripts and styles,
// leaving out what repeats the status line, cut at maxHTMLSnippet runes:
//
//	an HTML page: "The server, acting as a gateway, received an invalid response..."
func htmlSnippet(status string, body []byte) string {
	title, text := htmlText(body)
	// The body's heading most often repeats the title or the status line.
	text = trimLeading(text, title, status, statusText(status))
	var parts []string
	for _, p := range []string{title, text} {
		if p != "" && !strings.EqualFold(p, status) && !strings.EqualFold(p, statusText(status)) {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "an HTML page saying nothing more"
	}
	return "an HTML page: " + strconv.Quote(OneLine(strings.Join(parts, " — "), maxHTMLSnippet))
}

// trimLeading drops from the start of text each of heads found there, in
// any case, as whole words.
func trimLeading(text string, heads ...string) string {
	for _, h := range heads {
		if h == "" || len(text) < len(h) || !strings.EqualFold(text[:len(h)], h) {
			continue
		}
		if rest := text[len(h):]; rest == "" || rest[0] == ' ' {
			text = strings.TrimSpace(rest)
		}
	}
	return text
}

// statusText is "Bad Gateway" of "502 Bad Gateway".
func statusText(status string) string {
	_, text, _ := strings.Cut(status, " ")
	return text
}

// htmlText returns an HTML document's title and the text of the rest, each
// on one line, entities decoded, with x/net/html's tokenizer: tags and
// comments dropped, and the content of script, style, template and
// noscript elements, which is all an error page's words need.
func htmlText(doc []byte) (title, text string) {
	var out, titleBuf strings.Builder
	skip := "" // the element whose content is dropped, until it ends
	inTitle := false
	z := xhtml.NewTokenizer(bytes.NewReader(doc))
	for {
		switch z.Next() {
		case xhtml.ErrorToken: // io.EOF, or a page cut short: what was read is enough
			fold := func(s string) string { return strings.Join(strings.Fields(s), " ") }
			return fold(titleBuf.String()), fold(out.String())
		case xhtml.TextToken:
			switch {
			case skip != "":
			case inTitle:
				titleBuf.Write(z.Text())
			default:
				out.Write(z.Text())
			}
		case xhtml.StartTagToken:
			name, _ := z.TagName()
			switch tag := string(name); tag {
			case "title":
				inTitle = true
			case "script", "style", "template", "noscript":
				if skip == "" {
					skip = tag
				}
			default:
				out.WriteByte(' ') // a tag separates words: "<td>a</td><td>b</td>" is "a b"
			}
		case xhtml.EndTagToken:
			name, _ := z.TagName()
			switch tag := string(name); {
			case tag == "title":
				inTitle = false
			case tag == skip:
				skip = ""
			default:
				out.WriteByte(' ')
			}
		}
	}
}
