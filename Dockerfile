# Joyride's container image: one static binary in an empty (scratch) image, run as a
# non-root user, with a HEALTHCHECK that calls `joyride health` (no curl needed).
#
#   docker build -t joyride .                        # builds in rust:1-bookworm (pulled)
#   docker build --build-arg BUILDER=IMAGE -t joyride .
#                       # any local image with cargo, a C linker and glibc's libc.a
#   scripts/image       # no registry at all: builds the static binary on this host and
#                       # packages it with contrib/Dockerfile.prebuilt (same image)
#
# The binary is glibc-static (`-C target-feature=+crt-static`), so the default builder
# needs nothing beyond the official Rust image (no musl target). Joyride makes no name
# lookups through glibc's NSS (every address it takes is a literal IP), which static
# glibc could not do without its shared NSS modules.

ARG BUILDER=rust:1-bookworm

# --- The build: any image with cargo, a C linker and glibc's static libc. ---
FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
# Offline when the builder brings the crates (CARGO_NET_OFFLINE=true), else from crates.io.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin joyride --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/joyride /joyride \
 && /joyride --version

# --- The image: the binary in an empty image, and how it runs. ---
# (contrib/Dockerfile.prebuilt repeats these lines; a test keeps the two the same.)
FROM scratch
COPY --from=build /joyride /usr/local/bin/joyride
# The Docker source needs read access to the socket: add the socket's group at run time
# (`--group-add $(stat -c %g /var/run/docker.sock)`, or group_add in docker-compose.yml).
USER 65534:65534
# Docker (20.10 and later) lets unprivileged processes bind ports below 1024 inside a
# container's own network namespace, so port 53 needs neither root nor a capability.
ENV JOYRIDE_DNS_LISTEN=0.0.0.0:53 \
    JOYRIDE_HTTP_LISTEN=0.0.0.0:5380 \
    JOYRIDE_HOSTS_DIR=/etc/joyride/hosts.d
EXPOSE 53/udp 53/tcp 5380/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/joyride", "health"]
ENTRYPOINT ["/usr/local/bin/joyride"]
LABEL org.opencontainers.image.title="joyride" \
      org.opencontainers.image.description="DNS names for Docker containers, on one host and across many" \
      org.opencontainers.image.licenses="MIT"
