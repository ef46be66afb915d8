import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from resolverd.vvfile import host_subject, render

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n"


def certificate(*attributes: x509.NameAttribute) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name(list(attributes))
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def test_host_subject_in_the_certificates_order_with_short_names_and_commas_escaped():
    cert = certificate(x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
                       x509.NameAttribute(NameOID.COMMON_NAME, "console.example.com"))
    assert host_subject(cert) == "C=DE,O=Example\\, Inc.,CN=console.example.com"


def test_vv_file_byte_for_byte():
    assert render("demo", ("console.example.com", 443), "tok_EN-1", CA_PEM, "CN=proxy", connect_proxy=False) == (
        "[virt-viewer]\n"
        "type=spice\n"
        "host=console.example.com\n"
        "tls-port=443\n"
        "password=tok_EN-1\n"
        "ca=-----BEGIN CERTIFICATE-----\\nMIIB\\nAAAA\\n-----END CERTIFICATE-----\n"
        "host-subject=CN=proxy\n"
        "secure-channels=all\n"
        "delete-this-file=1\n"
        "title=demo\n")


def test_vv_file_for_http_connect_carries_the_token_as_proxy_password():
    text = render("demo", ("2001:db8::1", 8443), "tok", CA_PEM, "CN=proxy", connect_proxy=True)
    assert text.endswith("title=demo\nproxy=http://console:tok@[2001:db8::1]:8443\n")
