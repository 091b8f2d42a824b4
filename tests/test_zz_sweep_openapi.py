import time, pytest
from openapi_review_support import check_response
from test_localapi_support import LocalApi, bearer
from mfa_actions import enrol_user, step_clock  # noqa
from sqlalchemy import update
from identity.extensions import db
from identity.models import User

out = []
def chk(doc, m, p, r, label=""):
    try:
        check_response(doc, m, p, r)
        out.append(f"ok   {label} {m} {p} {r.status_code}")
    except AssertionError as e:
        out.append(f"FAIL {label} {m} {p} {r.status_code}: {str(e)[:300]} hdrs={dict((k,v) for k,v in r.headers.items() if k in ('WWW-Authenticate','Retry-After','Content-Type'))}")

def test_sweep(app, client, seeded, mail):
    api = LocalApi(app, client)
    doc = client.get("/localapi/openapi.json", headers=bearer(api.token())).get_json()
    ops = [("get","/localapi/account",None),("post","/localapi/password",{"current_password":"x","new_password":"y","confirm_password":"z"}),("put","/localapi/email",{"email":"a@b.example","current_password":"x"}),("post","/localapi/email/verification",None),("get","/localapi/sessions",None),("delete","/localapi/sessions",None),("delete","/localapi/sessions/app_x",None),("get","/localapi/openapi.json",None)]
    expired = api.forge({"exp": int(time.time()) - 100, "iat": int(time.time()) - 1000})
    toks = {"none": None, "bad": "abc", "noscope": api.token(scope="openid"), "svc": api.token(client_id="service", username=None, scope="IdentityServerApi"), "expired": expired}
    for label, t in toks.items():
        for m, p, body in ops:
            r = getattr(client, m)(p, headers=bearer(t) if t else {}, json=body)
            chk(doc, m, p, r, label)
    for m, p, body in ops:
        r = getattr(client, m)(p, headers=bearer(api.token()), json=body)
        chk(doc, m, p, r, "good")
    # verification until too many
    for i in range(5):
        r = client.post("/localapi/email/verification", headers=bearer(api.token())); chk(doc, "post", "/localapi/email/verification", r, f"verif{i}")
    with app.app_context():
        db.session.execute(update(User).values(email_verified=True)); db.session.commit()
    r = client.post("/localapi/email/verification", headers=bearer(api.token())); chk(doc, "post", "/localapi/email/verification", r, "verified")
    # lockout
    for i in range(12):
        r = client.post("/localapi/password", headers=bearer(api.token()), json={"current_password":"wrong","new_password":"y","confirm_password":"z"})
        chk(doc, "post", "/localapi/password", r, f"lock{i}")
    r = client.put("/localapi/email", headers=bearer(api.token()), json={"email":"q@b.example","current_password":"wrong"}); chk(doc, "put", "/localapi/email", r, "locked-email")
    open("/tmp/rev14-openapi-sweep.txt","w").write("\n".join(out))

def test_sweep_mfa(app, client, seeded, step_clock):
    api = LocalApi(app, client)
    doc = client.get("/localapi/openapi.json", headers=bearer(api.token())).get_json()
    enrol_user(app)
    for m, p, body in [("post","/localapi/password",{"current_password":"tulip-quartz-harbor-917","new_password":"copper-lantern-orchard-73","confirm_password":"copper-lantern-orchard-73"}),("put","/localapi/email",{"email":"a@b.example","current_password":"tulip-quartz-harbor-917"}), ("post","/localapi/password",{"current_password":"tulip-quartz-harbor-917","new_password":"copper-lantern-orchard-73","confirm_password":"copper-lantern-orchard-73", "otp": "000000"})]:
        r = getattr(client, m)(p, headers=bearer(api.token()), json=body)
        chk(doc, m, p, r, "mfa")
        out.append(f"    {r.headers.get('WWW-Authenticate')} {r.get_data(as_text=True)[:200]}")
    open("/tmp/rev14-openapi-sweep.txt","a").write("\n".join(out))
