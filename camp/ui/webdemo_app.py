"""The Streamlit chat app behind `camp webdemo` (run by `streamlit run`; configured by environment variables).

CAMP_WEBDEMO_MODEL   catalogue name or model folder (launch() passes the resolved folder)
CAMP_WEBDEMO_SYSTEM  system prompt (optional)
"""

from __future__ import annotations

import os

import streamlit as st

from camp.conversation.session import chat
from camp.runtime.i18n import t

MODEL = os.environ.get("CAMP_WEBDEMO_MODEL", "auto")
SYSTEM = os.environ.get("CAMP_WEBDEMO_SYSTEM") or None


@st.cache_resource(show_spinner=t("正在加载模型…", "Loading the model…"))
def base_session(model: str, system: str | None):
    # Cached once per server process: the model is loaded one time for every browser tab.
    return chat(model, system=system)


st.set_page_config(page_title=t("camp 对话", "camp chat"), page_icon="💬")
st.title(t("💬 camp 对话", "💬 camp chat"))

try:
    base = base_session(MODEL, SYSTEM)
except Exception as exc:  # shown in the page instead of a bare traceback
    st.error(t(f"无法加载模型 {MODEL!r}：{exc}", f"Cannot load the model {MODEL!r}: {exc}"))
    st.stop()

# Each browser tab has its own conversation over the shared model.
if "session" not in st.session_state:
    st.session_state.session = base.fork()
session = st.session_state.session

with st.sidebar:
    st.caption(base.backend.describe())
    max_new_tokens = st.slider(t("最多生成 token 数", "Max new tokens"), 16, 2048, int(base.gen.get("max_new_tokens", 256)), step=16)
    temperature = st.slider(t("温度（0 = 贪心解码）", "Temperature (0 = greedy)"), 0.0, 1.5, 0.0, step=0.05)
    top_p = st.slider(t("Top-p（核采样）", "Top-p"), 0.05, 1.0, 0.8, step=0.05, disabled=temperature == 0)
    if st.button(t("清空对话", "Clear chat")):
        session.reset()
    # a picture for vision-language models: sent with the next message (camp.multimodal checks it)
    upload = (st.file_uploader(t("图片（视觉语言模型）", "Image (vision-language models)"), type=["png", "jpg", "jpeg", "gif", "bmp", "webp"])
              if getattr(base.backend, "vision", True) else None)

for message in session.history:
    with st.chat_message(message["role"]):
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image":
                st.image(part["image"], width=96)
        st.markdown(message["content"] if isinstance(message["content"], str)
                    else "".join(p.get("text", "") for p in message["content"] if p.get("type") == "text"))

if prompt := st.chat_input(t("输入你的问题", "Ask something")):
    # each uploaded picture goes with one message, not with every later one
    image = upload.getvalue() if upload is not None and st.session_state.get("sent_upload") != upload.file_id else None
    if image is not None:
        st.session_state.sent_upload = upload.file_id
    with st.chat_message("user"):
        if image is not None:
            st.image(image, width=96)
        st.markdown(prompt)
    with st.chat_message("assistant"):
        gen = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        if temperature > 0:
            gen["top_p"] = top_p
        try:
            st.write_stream(session.stream(prompt, image, **gen))
        except Exception as exc:
            st.error(f"{type(exc).__name__}: {exc}")
