"""TLS for the example scripts (worker.py, producer.py): the jobmesh CLI's --tls flags with their
environment twins, the PEM files they name, and a gRPC channel that uses them."""


def read_tls(p, args):
    """The PEM files of --tls-ca/--tls-cert/--tls-key as a dict of bytes (None for a file not given), or
    None for plaintext: TLS is on with --tls or any of the files. Exits with a usage error naming a
    file that cannot be read, or a certificate without its key."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key (JOBMESH_TLS_CLIENT_CERT, JOBMESH_TLS_CLIENT_KEY) go together: give both or neither")

    def read(flag, path):
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            p.error("%s: cannot read %s: %s" % (flag, path, e.strerror))

    return {"ca": read("--tls-ca", args.tls_ca), "cert": read("--tls-cert", args.tls_cert), "key": read("--tls-key", args.tls_key)}


def open_channel(grpc, address, options, tls):
    """A channel to `address`: TLS with the files of read_tls (the system's roots without --tls-ca,
    a client certificate for mTLS with --tls-cert/--tls-key), or plaintext when `tls` is None."""
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    creds = grpc.ssl_channel_credentials(root_certificates=tls["ca"], private_key=tls["key"], certificate_chain=tls["cert"])
    return grpc.secure_channel(address, creds, options=options)


def add_tls_arguments(p, env):
    """The TLS flags, with their environment twins (the CLI's names)."""
    p.add_argument("--tls", action="store_true", default=env.get("JOBMESH_TLS", "") in ("1", "true"),
                   help="dial TLS, trusting the system's roots (implied by the --tls-* files)")
    p.add_argument("--tls-ca", default=env.get("JOBMESH_TLS_CA", ""), help="PEM CA bundle the server's certificate must chain to")
    p.add_argument("--tls-cert", default=env.get("JOBMESH_TLS_CLIENT_CERT", ""), help="PEM client certificate, for a server that requires one (mTLS)")
    p.add_argument("--tls-key", default=env.get("JOBMESH_TLS_CLIENT_KEY", ""), help="PEM private key of --tls-cert")
