// Package deploy checks the deployment files offline (there is no Docker
// engine or Kubernetes cluster on the machines that run the tests):
// docker-compose.yml loaded with compose-go, the Dockerfile's build step run
// with the Go toolchain, and the Kubernetes manifests in deploy/k8s strictly
// decoded into the k8s.io/api types. Each test asserts what a user of
// `docker compose up` or `kubectl apply -k deploy/k8s` would otherwise find out
// the hard way.
package deploy
