package poll

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

func TestUsableKeepsTheFirstOfRepeatedIDsInAnswersOfEverySize(t *testing.T) {
	for _, n := range []int{2, smallAnswer, smallAnswer + 1, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			items := make([]connector.Item, n)
			for i := range items {
				items[i] = connector.Item{ID: fmt.Sprint("id-", i), Version: "1"}
			}
			whole := (&Runner{}).usable(items, &Outcome{})
			assert.Equal(t, items, whole, "a whole answer is kept as it is")

			items = append(items, connector.Item{ID: "id-0", Version: "2"}, connector.Item{Version: "1"}, connector.Item{ID: "last", Version: "1"})
			out := &Outcome{}
			kept := (&Runner{}).usable(items, out)
			assert.Equal(t, append(items[:n:n], connector.Item{ID: "last", Version: "1"}), kept)
			if assert.Len(t, out.Failed, 2) {
				assert.Equal(t, "id-0", out.Failed[0].ID)
				assert.EqualError(t, out.Failed[0].Err, "item id repeated in one poll")
				assert.Equal(t, fmt.Sprintf("items[%d]", n+1), out.Failed[1].ID)
			}
		})
	}
}
