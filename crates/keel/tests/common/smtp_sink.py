"""An SMTP server for the e-mail channel's tests (aiosmtpd): STARTTLS offered
and required, then a login (one accepted) before MAIL, every message written
to OUT/N.eml with a first line saying whether the session was encrypted and
who logged in. Prints "ready PORT" once it listens.

usage: smtp_sink.py CERT KEY OUT [--plain] [--slow]

--slow answers a message's final "." 30 s after writing it down: a sender
cut meanwhile cannot know whether it arrived.
"""

import asyncio
import pathlib
import socket
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
plain = "--plain" in sys.argv
slow = "--slow" in sys.argv


class Sink:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        tls = "tls" if session.ssl else "plain"
        login = session.auth_data.login.decode() if session.authenticated else "none"
        head = f"X-Sink: {tls} login={login} rcpt={','.join(envelope.rcpt_tos)}\r\n"
        (out / f"{self.n}.eml.part").write_bytes(head.encode() + envelope.original_content)
        (out / f"{self.n}.eml.part").rename(out / f"{self.n}.eml")
        if slow:
            await asyncio.sleep(30)
        return "250 OK queued"


def authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login == b"keel" and auth_data.password == b"s3cret":
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
options = {} if plain else {
    "tls_context": context,
    "require_starttls": True,
    "authenticator": authenticate,
    "auth_require_tls": True,
    "auth_required": True,
}
# The controller checks that it listens by connecting to its port: it needs
# a real one, not 0.
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
controller = Controller(Sink(), hostname="127.0.0.1", port=port, **options)
controller.start()
print(f"ready {controller.port}", flush=True)
sys.stdin.read()
controller.stop()
