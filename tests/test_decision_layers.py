"""identity/oauth2 decides, identity/web renders: oauth2 neither renders nor names pages, web never imports Authlib.

Read from the source (ast), so a violation fails here rather than as a surprise in review.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "identity"
RENDERING = {"render_template", "render_template_string", "redirect", "url_for", "make_response"}


def _modules(package: str):
    for path in sorted((ROOT / package).glob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _flask_names(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "flask":
            names |= {alias.name for alias in node.names}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "flask":
            names.add(node.attr)
    return names


def _strings(tree) -> set[str]:
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def _imports(tree) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_oauth2_does_not_render_or_redirect():
    offenders = {path.name: sorted(_flask_names(tree) & RENDERING) for path, tree in _modules("oauth2")}
    assert {name: used for name, used in offenders.items() if used} == {}


def test_oauth2_does_not_name_web_endpoints_or_templates(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"}
    assert "account.login" in endpoints and "consent.consent" in endpoints  # the names this test guards
    offenders = {}
    for path, tree in _modules("oauth2"):
        named = sorted(s for s in _strings(tree) if s in endpoints or s.endswith((".html", ".jinja")))
        if named:
            offenders[path.name] = named
    assert offenders == {}


def test_web_does_not_import_authlib():
    offenders = {path.name: sorted(m for m in _imports(tree) if m.split(".")[0] == "authlib")
                 for path, tree in _modules("web")}
    assert {name: mods for name, mods in offenders.items() if mods} == {}
