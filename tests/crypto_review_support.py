"""Helpers of tests/test_crypto_review.py: an SMTP server speaking TLS with a certificate of its own."""

import datetime
import ipaddress
import ssl

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.server import free_port
from mail_server import HOST, Inbox


def self_signed_certificate(folder) -> tuple[str, str]:
    """(certificate file, key file) of a self-signed certificate for 127.0.0.1 and localhost: one no
    system trusts, as a man in the middle would present."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + datetime.timedelta(days=30))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "smtp.crt", folder / "smtp.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


class TlsMailServer:
    """An SMTP server on a free loopback port: TLS from the start (`implicit`) or after STARTTLS."""

    def __init__(self, cert_file: str, key_file: str, *, implicit: bool):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.inbox = Inbox()
        self.port = free_port()
        tls = {"ssl_context": context} if implicit else {"tls_context": context, "require_starttls": True}
        self.controller = Controller(self.inbox, hostname=HOST, port=self.port, **tls)

    def start(self) -> "TlsMailServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
