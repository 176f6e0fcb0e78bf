// Package deploy checks the deployment files offline (there is no Docker
// engine or Kubernetes cluster on the machines that run the tests):
// docker-compose.yml loaded with compose-go, the Dockerfile's build step run
// with the Go toolchain, and the Helm chart in deploy/helm/pollgrid linted
// and rendered through the Helm SDK with several value sets, every object
// strictly decoded into the k8s.io/api types. Each test asserts what a user
// of `docker compose up` or `helm install` would otherwise find out the hard
// way. docs_test.go holds the docs to the code: every environment variable
// the code reads is documented and every one the docs name is read, and the
// README's layout and `make help` leave nothing out.
package deploy
