package connector

// CutText cuts s to at most maxRunes runes, for an item's text field (a
// message, release notes): a signal is not an archive. It reports whether
// it cut.
func CutText(s string, maxRunes int) (string, bool) {
	count := 0
	for i := range s {
		if count == maxRunes {
			return s[:i], true
		}
		count++
	}
	return s, false
}

// SetDefault gives an optional config field (a pointer, so that a written
// 0 or false is not taken for "left out") its default when it was left out:
//
//	connector.SetDefault(&c.MaxPages, DefaultMaxPages)
func SetDefault[T any](field **T, value T) {
	if *field == nil {
		*field = &value
	}
}
