package service

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/natsconn"
)

// natsPermissions is what the services' NATS user must be allowed, said when
// NATS denies it a subject.
const natsPermissions = "allow publish and subscribe on pollgrid.>, signals.>, $JS.API.> and _INBOX.> (or the inbox prefix), and publish on $KV.pollgrid.> (deploy/nats/pollgrid.conf, docs/deploy.md)"

// natsDialer is how a service reaches NATS: its NATS_* variables, under the
// rules of pkg/natsconn. A service never falls back to the nats CLI's
// selected context: its connection comes from its own environment.
func natsDialer(lookup config.Env) (*natsconn.Dialer, error) {
	o := natsconn.FromEnv(lookup)
	o.Permissions = natsPermissions
	return natsconn.New(o, lookup)
}

// natsTimings: reconnect for ever, every second (with jitter); find a dead
// peer within 30 s (pings every 10 s, three may go unanswered) rather than
// the client's default 4 minutes.
func natsTimings() []nats.Option {
	return []nats.Option{
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// The server may answer "authorization violation" while it restarts
		// with other accounts; by default the client gives up after two,
		// and the connection then stays closed for good.
		nats.IgnoreAuthErrorAbort(),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
	}
}
