# serve-bin: one compiled binary in a small runtime image.
#
# Two ways to get the binary in, chosen with --target (README "Docker"):
#
#   docker build -t serve-bin .                                  # compiles inside, from package-lock.json (default)
#   npm run build && docker build --target prebuilt -t serve-bin .   # copies dist/serve-bin built outside
#
# A target, not a build argument, chooses: the classic builder (what `docker
# build` is without buildx) builds every stage before the one it is asked for,
# so only a stage order lets a prebuilt build skip the compile stage's image.
# (The classic builder's default build thus copies dist/serve-bin on the way
# too, and needs it; BuildKit skips stages the target does not use.)
#
# Base images are build arguments with public defaults. Where no registry can
# be reached, make a base from this machine's glibc and name it:
#
#   docker/make-base.sh dist/serve-bin local/glibc-base:1
#   docker build --target prebuilt --build-arg BASE=local/glibc-base:1 -t serve-bin .
#
# Run (graph mounted at /app; the admin API stays on the container's loopback):
#
#   docker run --rm -p 8000:8000 --shm-size 2g -v "$PWD/examples/tutorial:/app:ro" serve-bin
#
# An app with its own packages: an image FROM this one with the app, its
# node_modules included (installed for Linux/glibc), copied to /app:
#
#   FROM serve-bin
#   COPY . /app/
#
# Native addons need their system libraries in the base (onnxruntime-node:
# libstdc++, libgcc_s; debian slim has them; make-base.sh takes the addons).
# docs/docker.md has a recipe that installs node_modules in a build stage.

# Runtime base: anything with glibc (the binary links libc, libm, libdl,
# libpthread and ld-linux only). No shell, package manager or curl is needed.
ARG BASE=debian:bookworm-slim
# Compile stage: Node and npm; Bun itself comes from package-lock.json.
ARG BUILDER=node:22-bookworm-slim

# ---------------------------------------------------------------------------
# The runtime image without its binary: everything but one COPY.
FROM ${BASE} AS runtime
# Made in the image by WORKDIR; the graph or config is mounted or copied here.
WORKDIR /app
# 500 bodies carry the error message, not the stack (config proxy.errorDetail wins).
ENV SERVE_BIN_ERROR_DETAIL=message
# A numeric user, so it needs no useradd in the base (distroless-style).
USER 10001:10001
# Traffic. The admin API (8265) listens on 127.0.0.1 inside the container
# unless the operator runs with `--admin-host 0.0.0.0 --admin-token ...`
# (without a token the binary refuses to start, exit 2), so it is not EXPOSEd.
EXPOSE 8000
# SIGTERM (docker stop) drains in-flight requests for at most proxy.shutdownTimeoutS
# (8 s) and exits 0, inside docker stop's default 10 s grace.
STOPSIGNAL SIGTERM
# No curl in the image: the binary checks its own /-/healthz. With --port other
# than 8000, override it in a derived image, in exec form (the base may have no
# shell): HEALTHCHECK CMD ["/usr/local/bin/serve-bin", "healthcheck", "--port", "9000"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/serve-bin", "healthcheck", "--port", "8000"]
ENTRYPOINT ["/usr/local/bin/serve-bin"]
# Serve /app/graph.ts (default export) on every interface. Give another
# target as arguments: docker run ... serve-bin run /app/serve.yaml --host 0.0.0.0
CMD ["run", "/app/graph.ts", "--host", "0.0.0.0"]

# ---------------------------------------------------------------------------
# docker build --target prebuilt: the binary from `npm run build`, nothing pulled but BASE.
FROM runtime AS prebuilt
COPY --chown=0:0 dist/serve-bin /usr/local/bin/serve-bin

# ---------------------------------------------------------------------------
# Compile stage: the same `bun build --compile` as `npm run build`.
FROM ${BUILDER} AS compile
WORKDIR /src
COPY package.json package-lock.json bunfig.toml tsconfig.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY src ./src
RUN node_modules/.bin/bun build --compile --bytecode --format=esm --splitting --compile-autoload-package-json src/cli/main.ts --outfile /out/serve-bin \
 && /out/serve-bin --version

# ---------------------------------------------------------------------------
# Default target: the runtime image with the binary compiled above.
FROM runtime AS compiled
COPY --from=compile --chown=0:0 /out/serve-bin /usr/local/bin/serve-bin
