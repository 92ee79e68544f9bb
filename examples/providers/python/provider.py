#!/usr/bin/env python3
"""An external provider for stepflow (and KubeVela) in plain Python: the standard library only.

stepflow POSTs an action's $params as JSON to <endpoint>/<#do> and takes the JSON answer as the
action's $returns. A 4xx answer fails the step with its "message"; a 5xx is retried.

    python3 provider.py [ADDRESS:]PORT      (default 127.0.0.1:8090)

Actions:
    reverse  {"text": str}            -> {"text": str reversed}
    sum      {"numbers": [number...]} -> {"sum": number}
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST = 1 << 20  # bytes of a request's body read at most


class BadRequest(Exception):
    """A request the action cannot take: answered 400, which fails the step."""


def reverse(params):
    text = params.get("text")
    if not isinstance(text, str):
        raise BadRequest("reverse: text must be a string")
    return {"text": text[::-1]}


def sum_numbers(params):
    numbers = params.get("numbers")
    if not isinstance(numbers, list) or not all(
        isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers
    ):
        raise BadRequest("sum: numbers must be a list of numbers")
    return {"sum": sum(numbers)}


ACTIONS = {"reverse": reverse, "sum": sum_numbers}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        # A health check: stepflow never GETs, people and tests do.
        self.answer(200, {"actions": sorted(ACTIONS)})

    def do_POST(self):
        action = ACTIONS.get(self.path.strip("/"))
        if action is None:
            self.answer(404, {"message": "no action %r here" % self.path.strip("/")})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            self.answer(413, {"message": "request over %d bytes" % MAX_REQUEST})
            return
        try:
            params = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(params, dict):
                raise BadRequest("the parameters must be a JSON object")
            self.answer(200, action(params))
        except (BadRequest, ValueError) as e:
            self.answer(400, {"message": str(e)})
        except Exception as e:  # a bug here: stepflow retries a 5xx
            self.answer(500, {"message": "internal error: %s" % e})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        # One line per request on stderr; never the body, which may hold secrets.
        sys.stderr.write("%s %s\n" % (self.command, self.path))


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8090"
    host, _, port = addr.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    print("serving on http://%s:%d" % server.server_address[:2], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
