// Package natsconn is how pollgrid reaches NATS: the services and pollctl
// read the same settings, follow the same rules and explain a refusal in the
// same words. docs/connector-framework.md ("Connections") and
// docs/operate.md ("Connecting") say the same to operators.
//
// Settings come in layers, each overriding the same setting of the one
// below it: a nats CLI context, then the environment (NATS_URL, NATS_CREDS,
// ...), then pollctl's flags. Token and NATS_TOKEN_FILE are one setting
// written two ways: a layer that gives either replaces both below it.
//
// The rules, checked by New before anything dials:
//
//   - A context is NATS_CONTEXT (or --context): a name, read from
//     $XDG_CONFIG_HOME/nats/context/<name>.json (~/.config when unset), or a
//     path to a .json file (it ends in .json or holds a /). Only a program
//     that asks (pollctl) falls back to the context `nats context select`
//     chose, and only when it was given no setting at all: a service's
//     connection comes from its own environment, never from what someone
//     selected on the host.
//   - A context's url, user, password, creds, nkey, token, ca, cert, key,
//     inbox_prefix and tls_first are honoured; description and
//     color_scheme mean nothing here; every other field it may hold (nsc,
//     user_jwt, jetstream_domain, jetstream_api_prefix,
//     jetstream_event_prefix, socks_proxy, windows_*) is refused with the
//     fix, rather than silently ignored. Unknown fields are ignored.
//   - One way to authenticate: a user and password (or a token) written in
//     the URL, a user and password, a creds file, an nkey seed, or a token.
//     Two are refused with an error naming both, whichever layers they come
//     from. A user needs a password and a password a user.
//   - A client certificate needs its key, and a key its certificate.
//   - Every file named (creds, nkey, token file, CA, certificate, key) is
//     read and checked: a missing or unreadable one is an error naming the
//     setting it came from.
//   - The inbox prefix (NATS_INBOX_PREFIX, --inbox-prefix, a context's
//     inbox_prefix) is honoured: a user whose permissions allow replies only
//     on its own prefix (deploy/nats/pollgrid.conf's CONSUMER) needs it.
package natsconn
