# %% [markdown]
# # 07 · Step 7: a Python client with the OpenAI SDK, inside the sandbox
#
# **What you will learn**
# - the pattern every real agent uses: the OpenAI SDK with `base_url` pointed at the local model;
# - that it needs no API key and no egress;
# - streaming: the reply arriving token by token across the boundary.
#
# **Time:** 10 minutes · **Prerequisites:** notebooks 01–03.

# %% tags=["parameters"]
MODE = None
MODEL = None  # None: the mode's default model
SANDBOX = "dmr-test"
WORKDIR = "/tmp/dmr-test"

# %%
import labkit
from labkit import checks, exercises

lab = labkit.connect(mode=MODE)
model = MODEL or lab.default_model
box = lab.sandbox(SANDBOX)
box.create("shell", ".", cwd=WORKDIR);

# %% [markdown]
# ## Write `test_local.py` inside the sandbox
# The seed's script, with your model. It is written from inside the sandbox into the workspace,
# so it appears on the host too.

# %%
script = f'''from openai import OpenAI

client = OpenAI(
    base_url="http://host.docker.internal:{lab.port}/engines/llama.cpp/v1",
    api_key="not-needed",
)
resp = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "Write a Python function that reads a CSV and counts rows."}}],
    max_tokens=200,
)
print(resp.choices[0].message.content)
'''
box.exec(["bash", "-c", "cat > test_local.py"], input=script);

# %% [markdown]
# ## Install the SDK and run it
# The seed installs the SDK inside the sandbox. In embedded mode the course's Python environment is
# already visible inside, so pip finds `openai` installed and changes nothing. In live mode pip
# downloads it through the proxy (the `balanced` preset allows PyPI).

# %% tags=["nbval-ignore-output"]
box.exec("pip install --break-system-packages openai", timeout=300);

# %% tags=["nbval-ignore-output"]
run = box.exec("python3 test_local.py", timeout=300)

# %% [markdown]
# The model's code differs from run to run (and from a 135M model it is often wrong). What does not
# differ:

# %%
print("exit code:", run.returncode)
print("printed a reply:", bool(run.stdout.strip()))

# %% [markdown]
# ## Streaming
# Agents stream, so the user sees progress. The same client with `stream=True`; each chunk is
# printed the moment it crosses the boundary:

# %%
stream_script = f'''import time
from openai import OpenAI

client = OpenAI(base_url="http://host.docker.internal:{lab.port}/engines/llama.cpp/v1", api_key="not-needed")
start = time.monotonic()
chunks = 0
for chunk in client.chat.completions.create(
        model="{model}", stream=True, max_tokens=60,
        messages=[{{"role": "user", "content": "Name three colours."}}]):
    text = chunk.choices[0].delta.content or "" if chunk.choices else ""
    chunks += 1
    print(text, end="", flush=True)
print()
print(f"STREAM chunks={{chunks}}")
'''
box.exec(["bash", "-c", "cat > test_stream.py"], input=stream_script);

# %% tags=["nbval-ignore-output"]
streamed = box.exec("python3 test_stream.py", timeout=300)

# %%
print("streamed in more than one chunk:", int(streamed.stdout.rsplit("chunks=", 1)[-1]) > 1)

# %% [markdown]
# ## What just happened
# A Python program inside the sandbox used the standard OpenAI SDK with `base_url` set to the host's
# model API and a dummy key. Its requests crossed through the proxy like curl's did; nothing left
# your machine.
#
# ## Your turn
# Write your own `my_client.py` in the workspace that asks the model any question with the SDK, and
# run it inside the sandbox. The checkpoint looks for the file and an allowed chat request.

# %%
# Exercise: my_client.py

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# box.exec(["bash", "-c", "cat > my_client.py"], input=script.replace("reads a CSV and counts rows", "adds two numbers"))
# box.exec("python3 my_client.py")
# ```
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step7_sdk(lab, SANDBOX, WORKDIR, run)
exercises.workspace_file(WORKDIR, "my_client.py");
