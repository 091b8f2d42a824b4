"""A stand-in for curl, for tests/test_docs.py on a machine without it.

The docs show curl because a reader has it; the test runs their commands as written. Where curl
is missing, this script takes its place on PATH and does what the options the docs use ask for
(-s, -u, -d, -H, -X, -o, -w '%{http_code}'), with requests; any other option is an error, so a
doc that starts using one fails loudly instead of being half run.
"""

import sys

import requests


def main(argv: list[str]) -> int:
    method, auth, data, headers, out, write_out, url = None, None, [], {}, None, None, None
    args = iter(argv)
    for arg in args:
        if arg in ("-s", "--silent"):
            continue
        elif arg in ("-u", "--user"):
            auth = tuple(next(args).split(":", 1))
        elif arg in ("-d", "--data"):
            data.append(next(args))
        elif arg in ("-H", "--header"):
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg in ("-X", "--request"):
            method = next(args)
        elif arg in ("-o", "--output"):
            out = next(args)
        elif arg in ("-w", "--write-out"):
            write_out = next(args)
        elif arg.startswith("-"):
            print(f"curl_shim: unsupported option {arg}", file=sys.stderr)
            return 2
        else:
            url = arg
    body = "&".join(data) if data else None
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        answer = requests.request(method or ("POST" if body is not None else "GET"), url, auth=auth,
                                  data=body.encode() if body is not None else None, headers=headers,
                                  timeout=30, allow_redirects=False)
    except requests.ConnectionError as error:
        print(f"curl: (7) {error}", file=sys.stderr)
        return 7
    if out == "/dev/null":
        pass
    elif out:
        with open(out, "wb") as file:
            file.write(answer.content)
    else:
        sys.stdout.buffer.write(answer.content)
    if write_out:
        sys.stdout.write(write_out.replace("%{http_code}", str(answer.status_code)).replace("\\n", "\n"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
