package connector

// Nearest returns the candidate nearest to word when it is near enough to
// be a typo: "intreval" -> "interval", "weather-nooa" -> "weather-noaa".
// Unknown fields and types are reported with it.
func Nearest(word string, candidates []string) (string, bool) {
	best, bestDistance := "", -1
	for _, c := range candidates {
		if d := editDistance(word, c); bestDistance < 0 || d < bestDistance {
			best, bestDistance = c, d
		}
	}
	limit := max(1, min(2, len(word)/3))
	return best, bestDistance >= 0 && bestDistance <= limit
}

// editDistance is the optimal string alignment distance between a and b:
// Levenshtein plus swapping two neighbours, the commonest typo.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
