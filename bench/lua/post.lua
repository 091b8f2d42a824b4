-- A static POST: body from the environment (WRK_BODY), headers from wrk's -H options.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or ""
