package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// RedisOptions shape a redis-server process for fault and security tests.
// (pkg/redistest starts the plain servers that unit tests use.)
type RedisOptions struct {
	// AppendOnly turns the AOF on (appendfsync everysec, as production
	// should run), so that a restart keeps the data.
	AppendOnly bool
	// TLS serves TLS only, signed by this CA, and asks clients for a
	// certificate it signed.
	TLS *CA
	// Users are ACL rules ("app on >password ~pollgrid:* &* +@all"); when
	// set, the default user is turned off and the harness uses its own.
	Users []string
	// ReplicaOf makes the server a replica of this "host port".
	ReplicaOf string
}

// RedisServer is one redis-server process owned by a test.
type RedisServer struct {
	*Process
	Port int
	Dir  string

	t    testing.TB
	opts RedisOptions
	conf string
	// client pair the harness uses (TLS, ACL)
	tlsClient Pair
}

const harnessRedisUser, harnessRedisPassword = "harness", "harness-password"

// StartRedisServer runs redis-server on a free loopback port and waits
// until it answers.
func StartRedisServer(t testing.TB, o RedisOptions) *RedisServer {
	t.Helper()
	r := &RedisServer{t: t, opts: o, Port: Port(t, FreeAddr(t)), Dir: t.TempDir()}
	if o.TLS != nil {
		r.tlsClient = o.TLS.Client(t, fmt.Sprintf("harness-redis-%d", r.Port))
	}
	r.writeConf()
	r.start()
	return r
}

func (r *RedisServer) writeConf() {
	lines := []string{"bind 127.0.0.1", "save \"\"", "dir " + r.Dir, "daemonize no", "protected-mode no"}
	if r.opts.AppendOnly {
		lines = append(lines, "appendonly yes", "appendfsync everysec")
	} else {
		lines = append(lines, "appendonly no")
	}
	if ca := r.opts.TLS; ca != nil {
		server := ca.Server(r.t, fmt.Sprintf("redis-%d", r.Port))
		lines = append(lines, "port 0", "tls-port "+strconv.Itoa(r.Port), "tls-cert-file "+server.CertFile,
			"tls-key-file "+server.KeyFile, "tls-ca-cert-file "+ca.CertFile, "tls-auth-clients yes")
	} else {
		lines = append(lines, "port "+strconv.Itoa(r.Port))
	}
	if len(r.opts.Users) > 0 {
		lines = append(lines, "user default off", fmt.Sprintf("user %s on >%s ~* &* +@all", harnessRedisUser, harnessRedisPassword))
		for _, u := range r.opts.Users {
			lines = append(lines, "user "+u)
		}
	}
	if r.opts.ReplicaOf != "" {
		lines = append(lines, "replicaof "+r.opts.ReplicaOf)
	}
	r.conf = filepath.Join(r.t.TempDir(), "redis.conf")
	require.NoError(r.t, os.WriteFile(r.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
}

func (r *RedisServer) start() {
	r.t.Helper()
	bin, err := exec.LookPath("redis-server")
	require.NoError(r.t, err, `redis-server not found: run "make test" (it installs it) or apt-get install redis-server`)
	r.Process = StartProcess(r.t, bin, nil, r.conf)
	client := r.Client()
	defer client.Close()
	require.Eventually(r.t, func() bool {
		require.False(r.t, r.Exited(), "redis-server exited:\n%s", r.Stdout.String())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Ping(ctx).Err() == nil
	}, 30*time.Second, 20*time.Millisecond, "redis-server on port %d never answered", r.Port)
}

// Addr is host:port.
func (r *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// URL is the server as a REDIS_URL, with user:password when given.
func (r *RedisServer) URL(userPassword ...string) string {
	scheme := "redis"
	if r.opts.TLS != nil {
		scheme = "rediss"
	}
	auth := ""
	if len(userPassword) == 2 {
		auth = userPassword[0] + ":" + userPassword[1] + "@"
	}
	return fmt.Sprintf("%s://%s%s/0", scheme, auth, r.Addr())
}

// Client is an administrative client of the server (closed by the caller).
func (r *RedisServer) Client() *redis.Client {
	o := &redis.Options{Addr: r.Addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1, ContextTimeoutEnabled: true}
	if len(r.opts.Users) > 0 {
		o.Username, o.Password = harnessRedisUser, harnessRedisPassword
	}
	if ca := r.opts.TLS; ca != nil {
		pem, err := os.ReadFile(ca.CertFile)
		require.NoError(r.t, err)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		pair, err := tls.LoadX509KeyPair(r.tlsClient.CertFile, r.tlsClient.KeyFile)
		require.NoError(r.t, err)
		o.TLSConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return redis.NewClient(o)
}

// Freeze stops the process (SIGSTOP): it holds its connections and answers
// nothing until Thaw.
func (r *RedisServer) Freeze() { _ = r.Cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (r *RedisServer) Thaw() { _ = r.Cmd.Process.Signal(syscall.SIGCONT) }

// Restart kills the server (if it runs) and starts it again on the same
// port: with its data directory when keepData (what the AOF saved), or
// empty, as a server whose disk was lost.
func (r *RedisServer) Restart(keepData bool) {
	r.t.Helper()
	r.Kill()
	if !keepData {
		r.Dir = r.t.TempDir()
		r.writeConf()
	}
	r.start()
}

// SentinelSet is a Redis master, its replicas and three Sentinels on
// loopback: what REDIS_URL=redis-sentinel://... points at.
type SentinelSet struct {
	Master    *RedisServer
	Replicas  []*RedisServer
	Sentinels []*Process
	// MasterName is the name the Sentinels monitor.
	MasterName string
	ports      []int
	t          testing.TB
}

// StartSentinelSet starts a master, replicas replicas of it and three
// Sentinels (quorum 2) that fail over after one second without answer.
func StartSentinelSet(t testing.TB, replicas int) *SentinelSet {
	t.Helper()
	s := &SentinelSet{t: t, MasterName: "pollgrid", Master: StartRedisServer(t, RedisOptions{AppendOnly: true})}
	for range replicas {
		s.Replicas = append(s.Replicas, StartRedisServer(t, RedisOptions{AppendOnly: true, ReplicaOf: fmt.Sprintf("127.0.0.1 %d", s.Master.Port)}))
	}
	bin, err := exec.LookPath("redis-server")
	require.NoError(t, err)
	for range 3 {
		port := Port(t, FreeAddr(t))
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		require.NoError(t, os.WriteFile(conf, []byte(strings.Join([]string{
			"bind 127.0.0.1", "port " + strconv.Itoa(port), "daemonize no", "dir " + t.TempDir(),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", s.MasterName, s.Master.Port),
			"sentinel down-after-milliseconds " + s.MasterName + " 1000",
			"sentinel failover-timeout " + s.MasterName + " 5000",
			"sentinel parallel-syncs " + s.MasterName + " 1",
		}, "\n")+"\n"), 0o600))
		s.Sentinels = append(s.Sentinels, StartProcess(t, bin, nil, conf, "--sentinel"))
		s.ports = append(s.ports, port)
	}
	// Ready once every Sentinel knows the master and its replicas.
	for _, port := range s.ports {
		c := redis.NewSentinelClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r, err := c.Replicas(ctx, s.MasterName).Result()
			return err == nil && len(r) == replicas
		}, 30*time.Second, 50*time.Millisecond, "Sentinel on port %d never saw the replicas", port)
		_ = c.Close()
	}
	return s
}

// URL is the set as a REDIS_URL.
func (s *SentinelSet) URL() string {
	var hosts []string
	for _, p := range s.ports {
		hosts = append(hosts, "127.0.0.1:"+strconv.Itoa(p))
	}
	return fmt.Sprintf("redis-sentinel://%s/%s/0", strings.Join(hosts, ","), s.MasterName)
}

// CurrentMaster asks a Sentinel which server is the master now.
func (s *SentinelSet) CurrentMaster() *RedisServer {
	c := redis.NewSentinelClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(s.ports[0])})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil || len(addr) != 2 {
		return nil
	}
	for _, r := range append([]*RedisServer{s.Master}, s.Replicas...) {
		if strconv.Itoa(r.Port) == addr[1] {
			return r
		}
	}
	return nil
}

// RedisCluster is a Redis Cluster of masters on loopback (no replicas):
// what REDIS_URL=redis-cluster://... points at.
type RedisCluster struct {
	Nodes []*RedisServer
}

// StartRedisCluster starts masters cluster-enabled servers and joins them
// with redis-cli --cluster create, then waits until the cluster is ok.
func StartRedisCluster(t testing.TB, masters int) *RedisCluster {
	t.Helper()
	c := &RedisCluster{}
	var addrs []string
	for range masters {
		r := &RedisServer{t: t, Port: Port(t, FreeAddr(t)), Dir: t.TempDir()}
		r.writeConf()
		f, err := os.OpenFile(r.conf, os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		// The bus port is a free port of its own: the default, port +
		// 10,000, may be taken, or past 65,535 for a high ephemeral port.
		_, err = fmt.Fprintf(f, "cluster-enabled yes\ncluster-port %d\ncluster-config-file %s\ncluster-node-timeout 2000\n",
			Port(t, FreeAddr(t)), filepath.Join(r.Dir, "nodes.conf"))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		r.start()
		c.Nodes = append(c.Nodes, r)
		addrs = append(addrs, r.Addr())
	}
	cli, err := exec.LookPath("redis-cli")
	require.NoError(t, err, "redis-cli comes with redis-server (Debian's redis-tools)")
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...).CombinedOutput()
	require.NoError(t, err, "redis-cli --cluster create: %s", out)
	admin := c.Nodes[0].Client()
	defer admin.Close()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := admin.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}, 30*time.Second, 50*time.Millisecond, "the Redis Cluster never became ok")
	return c
}

// URL is the cluster as a REDIS_URL.
func (c *RedisCluster) URL() string {
	var hosts []string
	for _, n := range c.Nodes {
		hosts = append(hosts, n.Addr())
	}
	return "redis-cluster://" + strings.Join(hosts, ",")
}
