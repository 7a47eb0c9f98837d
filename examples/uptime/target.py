"""A demo service for the uptime example: GET /health answers
{"status":"ok"} while up; POST /down and POST /up turn it down and up.
Standard library only."""

import http.server
import json

UP = {"value": True}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/health":
            return self.answer(404, {"error": "not found"})
        if UP["value"]:
            return self.answer(200, {"status": "ok"})
        return self.answer(503, {"status": "down"})

    def do_POST(self):
        if self.path in ("/down", "/up"):
            UP["value"] = self.path == "/up"
            return self.answer(200, {"up": UP["value"]})
        return self.answer(404, {"error": "not found"})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", 8300), Handler).serve_forever()
