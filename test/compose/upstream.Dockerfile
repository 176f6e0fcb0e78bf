# The benchmarks' local upstream API (test/bench/upstream), for
# compose-test.yml. run.sh builds the static binary on the host and passes it
# as the context.
FROM scratch
COPY upstream /upstream
EXPOSE 8090
ENTRYPOINT ["/upstream"]
