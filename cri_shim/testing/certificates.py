# -*- test-case-name: tests.sync.test_kube -*-
"""
Certificate authorities and certificates made on the fly, for TLS servers
and clients in tests.
"""


def make_ca(common_name="image-cri-shim test CA"):
    """
    A new self-signed certificate authority, valid for a day.

    :return: C{(certificate PEM, private key PEM)} bytes.
    """
    return _issue(None, common_name, None, (), ca=True)


def make_cert(ca, sans=(), common_name=None, organization=None):
    """
    A new certificate signed by C{ca}, for TLS servers and clients, valid for
    a day.

    :param ca: C{(certificate PEM, private key PEM)} from L{make_ca}.
    :param sans: its subject alternative names: IP addresses (C{"127.0.0.1"})
        or DNS names.
    :param common_name: its subject's CN; the first of C{sans} by default.
    :param organization: its subject's O, if any.
    :return: C{(certificate PEM, private key PEM)} bytes; the key is an
        C{EC PRIVATE KEY}.
    """
    return _issue(ca, common_name or (sans[0] if sans else "test"), organization, sans, ca=False)


def _issue(issuer, common_name, organization, sans, ca):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attributes)
    if issuer is None:
        issuer_name, issuer_key = subject, key
    else:
        issuer_name = x509.load_pem_x509_certificate(issuer[0]).subject
        issuer_key = serialization.load_pem_private_key(issuer[1], password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    names = []
    for name in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))
