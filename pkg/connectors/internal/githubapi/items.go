package githubapi

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// ItemFunc turns one element of a list page into an item. keep=false leaves
// an element out (a pull request, a draft); an ItemError with an empty ID is
// named by its position.
type ItemFunc func(raw json.RawMessage) (item connector.Item, keep bool, itemErr *connector.ItemError)

// Items walks a list whose pages are JSON arrays (issues, releases) and
// turns every element into an item with toItem. what names the list in
// errors ("issues": "response is not a list of issues", "issues[3]"). An
// item that comes twice (an issue updated or a release published mid-walk
// shifts the pages) is kept once, at its greater version. Result holds the
// Items and Failed; its State is for the caller to set.
func (c *Client) Items(ctx context.Context, firstURL string, validators connector.State, maxPages int, what string, toItem ItemFunc) (connector.Result, Walked, error) {
	var result connector.Result
	index := map[string]int{} // item id → position+1 in result.Items
	position := 0
	walked, err := c.Walk(ctx, firstURL, validators, maxPages, func(page Page) error {
		var elements []json.RawMessage
		if err := upstream.DecodeJSON(page.Body, &elements); err != nil {
			return fmt.Errorf("github: response is not a list of %s: %w", what, err)
		}
		for _, raw := range elements {
			item, keep, itemErr := toItem(raw)
			switch {
			case itemErr != nil:
				result.Fail(*itemErr, what, position)
			case !keep:
			case index[item.ID] > 0:
				if i := index[item.ID] - 1; item.Version > result.Items[i].Version {
					result.Items[i] = item
				}
			default:
				result.Items = append(result.Items, item)
				index[item.ID] = len(result.Items)
			}
			position++
		}
		return nil
	})
	return result, walked, err
}
