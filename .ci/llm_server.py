#!/usr/bin/env python3
"""Run llama.cpp's OpenAI-compatible HTTP server (xllamacpp) in the foreground until signalled.

Started by .ci/llm-server.sh. xllamacpp.Server serves from background threads, so this process
only has to stay alive: it writes its PID file once the server object exists, waits for SIGTERM or
SIGINT, and removes the PID file on the way out.
"""

import argparse
import os
import signal
import sys
import threading


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="path of the GGUF file")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--alias", default="smollm2", help="model name reported by /v1/models")
    ap.add_argument("--pid-file", required=True)
    args = ap.parse_args()

    if not os.path.isfile(args.model):
        print(f"llm_server.py: no model file at {args.model}", file=sys.stderr)
        return 2

    import xllamacpp as x

    p = x.CommonParams()
    p.model.path = args.model
    p.model_alias = {args.alias}  # a set of names in this xllamacpp version
    p.hostnames = [args.host]
    p.port = args.port
    p.n_ctx = args.ctx
    p.use_jinja = True
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads

    stop = threading.Event()

    def on_signal(signum, _frame):
        print(f"llm_server.py: signal {signum}, stopping", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    print(
        f"llm_server.py: xllamacpp {getattr(x, '__version__', '?')}, model {args.model}, "
        f"http://{args.host}:{args.port}, {args.threads} thread(s), n_ctx {args.ctx}",
        file=sys.stderr,
        flush=True,
    )
    srv = x.Server(p)  # noqa: F841 - keeps the server alive while referenced

    tmp = f"{args.pid_file}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, args.pid_file)

    try:
        while not stop.wait(1.0):
            pass
    finally:
        try:
            with open(args.pid_file) as f:
                if f.read().strip() == str(os.getpid()):
                    os.remove(args.pid_file)
        except OSError:
            pass
    # Skip interpreter teardown: the native server threads are not joined cleanly by it.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
