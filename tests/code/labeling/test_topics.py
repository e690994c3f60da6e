"""The Python topic matcher has the extension's topics and keywords, and matches as it does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from civicsense.labeling.topics import NO_TOPIC, TOPICS, match_topics, primary_topic
from tests_support import ROOT

SETTINGS_JS = ROOT / "extension" / "lib" / "settings.js"
SAMPLES = ["The abortion ban", "Abortions rose", "women’s rights now", "#MeToo again",
           "godly people", "God bless", "Roe  v. Wade", "Pro–choice rally", "carbon tax vote",
           "nothing at all", "churches and the election", "solarpanel", "wind farms",
           "feminists", "misogyny_x", "ÉLECTIONS"]


def _js_topics() -> list[dict]:
    """DEFAULT_TOPICS parsed out of settings.js (its object literal, made JSON)."""
    source = SETTINGS_JS.read_text()
    body = re.search(r"DEFAULT_TOPICS = Object\.freeze\((\[.*?\n\])\);", source, re.S).group(1)
    body = re.sub(r"(\b(?:id|name|keywords)):", r'"\1":', body)
    return json.loads(re.sub(r",(\s*[\]}])", r"\1", body))


def test_the_topics_and_keywords_are_the_extensions():
    js = _js_topics()
    assert len(js) == 5
    assert [(t["id"], t["name"], list(t["keywords"])) for t in js] == [
        (t.id, t.name, list(t.keywords)) for t in TOPICS]


def test_matching_follows_the_extension_rule():
    assert match_topics("The abortion ban") == ["abortion"]
    assert match_topics("Abortions rose") == ["abortion"]  # abortion* takes any ending
    assert match_topics("women’s rights now") == ["feminism"]  # curly apostrophe
    assert match_topics("godly people") == []  # whole words only
    assert match_topics("churches and the election") == ["religion", "elections"]
    assert primary_topic("churches and the election") == "religion"
    assert primary_topic("nothing at all") == NO_TOPIC


def test_matching_agrees_with_the_extensions_code_under_node(tmp_path):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (the keyword lists are compared without it)")
    script = tmp_path / "match.mjs"
    lib = ROOT / "extension" / "lib"
    script.write_text(
        f'import {{ DEFAULT_TOPICS }} from "{(lib / "settings.js").as_uri()}";\n'
        f'import {{ compileTopics, matchTopics }} from "{(lib / "topics.js").as_uri()}";\n'
        "const topics = compileTopics(DEFAULT_TOPICS);\n"
        f"const texts = {json.dumps(SAMPLES)};\n"
        "console.log(JSON.stringify(texts.map((t) => matchTopics(t, topics))));\n")
    done = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [match_topics(t) for t in SAMPLES]
