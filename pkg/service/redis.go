package service

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/config"
)

// The Redis client's settings, chosen for a store whose scripts must never
// run twice and whose callers must fail fast:
//
//   - Context deadlines are honoured (ContextTimeoutEnabled): /readyz's
//     1 s check answers within 1 s, and a poll's Redis calls end with it.
//   - No command is retried by the client (MaxRetries -1, and no cluster
//     redirect or retry): a Lua script whose answer was lost to a timeout
//     may have run, and running it again would take a second fencing token
//     or apply a commit twice. A failed call fails its tick, which JetStream
//     delivers again; fencing and seen versions make that safe.
//   - Timeouts bound calls made without a deadline: dial 2 s, read and
//     write 5 s (the aggregator's largest pipeline has a 10 s deadline of
//     its own and writes in milliseconds).
//   - The pool is sized for the service's concurrency (redisPoolSize) and
//     capped there (MaxActiveConns), and waiting for a connection is
//     bounded (1 s): a stalled Redis makes calls fail instead of piling up
//     goroutines and sockets.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 5 * time.Second
	redisPoolTimeout = time.Second
)

// redisPoolSize is how many connections a service keeps: a worker up to
// two per poll slot (a poll's lease renewal runs beside its acquire, seen
// versions or commit) plus the report publisher, /readyz and room; the
// scheduler and aggregator a fixed few (the aggregator also serves
// /metrics/connectors from Redis). REDIS_POOL_SIZE overrides it.
func redisPoolSize(service string, lookup config.Env) (int, error) {
	def := 10
	switch service {
	case "worker":
		concurrency, err := Int(lookup, "WORKER_CONCURRENCY", 4, 1, 1024)
		if err != nil {
			return 0, err
		}
		def = 2*concurrency + 4
	case "aggregator":
		def = 20
	}
	return Int(lookup, "REDIS_POOL_SIZE", def, 1, 10_000)
}

// redisExample is what REDIS_URL errors suggest.
const redisExample = "redis://[user:password@]host:6379/0, rediss:// for TLS, " +
	"redis-sentinel://[user:password@]host:26379[,host:26379...]/<master-name>[/<db>], " +
	"or redis-cluster://[user:password@]host:6379[,host:6379...]"

// redisTarget is a parsed REDIS_URL.
type redisTarget struct {
	mode     string // "single", "sentinel" or "cluster"
	tls      bool
	addrs    []string
	master   string
	db       int
	username string
	password string
	// sentinelUsername and sentinelPassword default to username and password.
	sentinelUsername, sentinelPassword string
	// single is what redis.ParseURL made of a single-node URL (it knows
	// unix:// sockets and every query option).
	single *redis.Options
	// query options of a sentinel or cluster URL
	dialTimeout, readTimeout, writeTimeout time.Duration
}

// parseRedisURL reads REDIS_URL. Errors never quote the URL (it may hold a
// password).
func parseRedisURL(raw string) (redisTarget, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return redisTarget{}, fmt.Errorf("REDIS_URL: not a URL (write %s)", redisExample)
	}
	t := redisTarget{mode: "single"}
	switch scheme {
	case "redis", "rediss", "unix":
		opts, err := redis.ParseURL(raw)
		if err != nil {
			return t, fmt.Errorf("REDIS_URL: %s (write %s)", redactURLError(err, raw), redisExample)
		}
		t.single, t.tls = opts, opts.TLSConfig != nil
		return t, nil
	case "redis-sentinel", "rediss-sentinel":
		t.mode = "sentinel"
	case "redis-cluster", "rediss-cluster":
		t.mode = "cluster"
	default:
		return t, fmt.Errorf("REDIS_URL: unknown scheme %q (write %s)", scheme, redisExample)
	}
	t.tls = strings.HasPrefix(scheme, "rediss")

	rest, rawQuery, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(hosts, '@'); at >= 0 {
		user, err := url.Parse("redis://" + hosts[:at+1] + "x")
		if err != nil || user.User == nil {
			return t, fmt.Errorf("REDIS_URL: the user and password do not parse (percent-encode special characters; write %s)", redisExample)
		}
		t.username = user.User.Username()
		t.password, _ = user.User.Password()
		hosts = hosts[at+1:]
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return t, fmt.Errorf("REDIS_URL: %q is not a host:port (write %s)", h, redisExample)
		}
		t.addrs = append(t.addrs, h)
	}
	segments := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	switch {
	case t.mode == "sentinel" && (len(segments) < 1 || len(segments) > 2):
		return t, fmt.Errorf("REDIS_URL: a Sentinel URL names its master after the hosts, as .../mymaster or .../mymaster/0 (write %s)", redisExample)
	case t.mode == "sentinel":
		t.master = segments[0]
		if len(segments) == 2 {
			db, err := strconv.Atoi(segments[1])
			if err != nil || db < 0 {
				return t, fmt.Errorf("REDIS_URL: database %q is not a number", segments[1])
			}
			t.db = db
		}
	case t.mode == "cluster" && len(segments) > 0:
		return t, errors.New("REDIS_URL: a Redis Cluster has no databases: drop the path after the hosts")
	}
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return t, errors.New("REDIS_URL: the query does not parse")
	}
	t.sentinelUsername, t.sentinelPassword = t.username, t.password
	for key, values := range query {
		v := values[len(values)-1]
		switch key {
		case "sentinel_username":
			t.sentinelUsername = v
		case "sentinel_password":
			t.sentinelPassword = v
		case "dial_timeout", "read_timeout", "write_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return t, fmt.Errorf("REDIS_URL: %s=%q is not a duration such as 2s", key, v)
			}
			*map[string]*time.Duration{"dial_timeout": &t.dialTimeout, "read_timeout": &t.readTimeout, "write_timeout": &t.writeTimeout}[key] = d
		default:
			return t, fmt.Errorf("REDIS_URL: unknown option %q (known: dial_timeout, read_timeout, write_timeout, sentinel_username, sentinel_password)", key)
		}
	}
	if t.mode == "cluster" && (query.Has("sentinel_username") || query.Has("sentinel_password")) {
		return t, errors.New("REDIS_URL: sentinel_username and sentinel_password are for redis-sentinel:// URLs")
	}
	return t, nil
}

// redactURLError keeps a go-redis parse error from quoting the URL.
func redactURLError(err error, raw string) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "[REDACTED]")
		}
	}
	return strings.ReplaceAll(msg, raw, "(REDIS_URL)")
}

// secrets are the passwords of the target, for the redactor.
func (t redisTarget) secrets() []string {
	var s []string
	for _, p := range []string{t.password, t.sentinelPassword} {
		if p != "" {
			s = append(s, p)
		}
	}
	if t.single != nil && t.single.Password != "" {
		s = append(s, t.single.Password)
	}
	return s
}

// redisTLS builds the TLS settings from REDIS_CA, REDIS_CERT and REDIS_KEY
// (PEM files): nil when none is set and the URL does not ask for TLS.
func redisTLS(lookup config.Env, base *tls.Config, wantTLS bool) (*tls.Config, error) {
	ca, cert, key := get(lookup, "REDIS_CA", ""), get(lookup, "REDIS_CERT", ""), get(lookup, "REDIS_KEY", "")
	if ca == "" && cert == "" && key == "" {
		return base, nil
	}
	if !wantTLS {
		return nil, errors.New("REDIS_CA, REDIS_CERT or REDIS_KEY is set but REDIS_URL does not use TLS (write rediss:// instead of redis://)")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if ca != "" {
		pool, err := loadCA("REDIS_CA", ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("REDIS_CERT and REDIS_KEY go together: set both (the client certificate and its key) or neither")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("REDIS_CERT=%s, REDIS_KEY=%s: %w (PEM files of a certificate and its private key)", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// loadCA reads a PEM bundle of CA certificates from the file named by key.
func loadCA(key, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (mount the CA certificate there, or unset %s)", key, err, key)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s=%s: no PEM certificate in the file", key, path)
	}
	return pool, nil
}

// NewRedisClient builds the client for REDIS_URL, in any of its forms
// (redis://, rediss://, redis-sentinel://, redis-cluster://), with the
// settings above for service; secrets are the URL's passwords, for the
// caller's redaction. It does no I/O besides reading certificate files:
// go-redis connects on first use. Every process pollgrid ships (pollctl
// too) opens Redis through it.
func NewRedisClient(service string, lookup config.Env, rawURL string) (redis.UniversalClient, []string, error) {
	target, err := parseRedisURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	pool, err := redisPoolSize(service, lookup)
	if err != nil {
		return nil, nil, err
	}
	name := "pollgrid-" + service
	if target.single != nil {
		o := target.single
		if o.TLSConfig, err = redisTLS(lookup, o.TLSConfig, o.TLSConfig != nil); err != nil {
			return nil, nil, err
		}
		o.ClientName = cmp.Or(o.ClientName, name)
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.DialTimeout = durationOr(o.DialTimeout, redisDialTimeout)
		o.ReadTimeout = durationOr(o.ReadTimeout, redisIOTimeout)
		o.WriteTimeout = durationOr(o.WriteTimeout, redisIOTimeout)
		o.PoolTimeout = durationOr(o.PoolTimeout, redisPoolTimeout)
		if o.PoolSize == 0 {
			o.PoolSize = pool
		}
		o.MaxActiveConns = max(o.MaxActiveConns, o.PoolSize)
		return redis.NewClient(o), target.secrets(), nil
	}
	var tlsConfig *tls.Config
	if target.tls {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tlsConfig, err = redisTLS(lookup, tlsConfig, target.tls); err != nil {
		return nil, nil, err
	}
	o := &redis.UniversalOptions{
		Addrs:                 target.addrs,
		ClientName:            name,
		DB:                    target.db,
		Username:              target.username,
		Password:              target.password,
		SentinelUsername:      target.sentinelUsername,
		SentinelPassword:      target.sentinelPassword,
		MasterName:            target.master,
		IsClusterMode:         target.mode == "cluster",
		TLSConfig:             tlsConfig,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		MaxRedirects:          -1, // a MOVED answer fails the call; the slot map is reloaded for the next
		DialTimeout:           durationOr(target.dialTimeout, redisDialTimeout),
		ReadTimeout:           durationOr(target.readTimeout, redisIOTimeout),
		WriteTimeout:          durationOr(target.writeTimeout, redisIOTimeout),
		PoolTimeout:           redisPoolTimeout,
		PoolSize:              pool,
		MaxActiveConns:        pool,
	}
	return redis.NewUniversalClient(o), target.secrets(), nil
}

// describeRedis names the target for the start-up log, without secrets.
func describeRedis(rawURL string) string {
	t, err := parseRedisURL(rawURL)
	switch {
	case err != nil:
		return "(unparsable REDIS_URL)"
	case t.single != nil:
		return t.single.Addr
	case t.mode == "sentinel":
		return fmt.Sprintf("Sentinel master %q via %s", t.master, strings.Join(slices.Clone(t.addrs), ","))
	default:
		return "Cluster via " + strings.Join(t.addrs, ",")
	}
}

func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
