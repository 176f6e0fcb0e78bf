package natsconn

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/tlstest"
)

// startNATS runs an embedded nats-server on a random port with opts (its
// host, port and logging set here) until the test ends.
func startNATS(t *testing.T, opts server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	ns, err := server.NewServer(&opts)
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second), "nats-server did not start")
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// writeFile writes content to name in a temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// nkeyUser makes a user nkey: its public key for the server, and a file
// holding its seed for NATS_NKEY.
func nkeyUser(t *testing.T) (public, seedFile string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	public, err = kp.PublicKey()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	return public, writeFile(t, "user.nk", string(seed))
}

// operatorNATS runs a nats-server in operator (JWT) mode with one account,
// and returns it with a .creds file of a user of that account and one of a
// user of an account the server does not know.
func operatorNATS(t *testing.T) (ns *server.Server, creds, strangerCreds string) {
	t.Helper()
	operator, err := nkeys.CreateOperator()
	require.NoError(t, err)
	operatorPub, err := operator.PublicKey()
	require.NoError(t, err)
	operatorClaims := jwt.NewOperatorClaims(operatorPub)
	operatorJWT, err := operatorClaims.Encode(operator)
	require.NoError(t, err)
	trusted, err := jwt.DecodeOperatorClaims(operatorJWT)
	require.NoError(t, err)

	account := func() (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		claims := jwt.NewAccountClaims(pub)
		token, err := claims.Encode(operator)
		require.NoError(t, err)
		return kp, pub, token
	}
	userCreds := func(accountKP nkeys.KeyPair, name string) string {
		kp, err := nkeys.CreateUser()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		token, err := jwt.NewUserClaims(pub).Encode(accountKP)
		require.NoError(t, err)
		seed, err := kp.Seed()
		require.NoError(t, err)
		creds, err := jwt.FormatUserConfig(token, seed)
		require.NoError(t, err)
		return writeFile(t, name, string(creds))
	}
	known, knownPub, knownJWT := account()
	stranger, _, _ := account()
	resolver := &server.MemAccResolver{}
	require.NoError(t, resolver.Store(knownPub, knownJWT))
	ns = startNATS(t, server.Options{TrustedOperators: []*jwt.OperatorClaims{trusted}, AccountResolver: resolver})
	return ns, userCreds(known, "pollgrid.creds"), userCreds(stranger, "stranger.creds")
}

// tlsNATS runs a nats-server that takes only TLS connections with a client
// certificate, both signed by ca.
func tlsNATS(t *testing.T, ca *tlstest.CA) *server.Server {
	t.Helper()
	cert := ca.Server(t, "nats")
	config, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CaFile: ca.CertFile, Verify: true, Timeout: 2})
	require.NoError(t, err)
	return startNATS(t, server.Options{TLS: true, TLSVerify: true, TLSConfig: config, TLSTimeout: 2})
}
