"""The page's own CSS and JavaScript (Gradio's ``css`` / ``head``): layout fixes, whole-number image scaling, the
input guard that refuses bad numbers instead of letting them be clamped, seed +/-1 with the arrow keys, and writing
the settings to the URL. No network access, no external scripts.
"""

from __future__ import annotations

import json

from ganserve.requests import MAX_SEED
from ganserve.ui.controls import STRIP_AMOUNTS

CSS = """
.gs-pixelated img, .gs-figure img { image-rendering: pixelated; }
/* Whole-number scaling (the script below sizes each image; the box only bounds it). */
.gs-int .image-container, .gs-int .image-frame { overflow: auto; height: auto !important; }
.gs-int img { max-width: none !important; max-height: none !important; object-fit: fill !important; }
#image { --gs-max-h: 384px; }
#interp-gif { --gs-max-h: 256px; }
#project-result, #project-target { --gs-max-h: 256px; }
.gs-strip { --gs-max-h: 80px; }
/* Labels and toolbars sit above the pictures, not on them. */
.gs-out .image-container, .gs-out .image-frame { padding-top: 2.4rem; }
.gs-gallery .grid-wrap { padding-top: 2.4rem; }
.gs-gallery .grid-container { padding-top: 0 !important; }
/* Galleries grow with their content: a 64-seed grid shows all its rows, no scroll box. */
.gs-gallery .grid-wrap, .gs-gallery .grid-wrap.fixed-height { max-height: none !important; height: auto !important;
  overflow: visible !important; }
.gs-gallery .thumbnail-item { display: flex; flex-direction: column; aspect-ratio: auto !important; }
.gs-gallery .thumbnail-item img { aspect-ratio: 1 / 1; width: 100%; height: auto; object-fit: contain; }
.gs-gallery .caption-label { position: static !important; transform: none !important; max-width: 100% !important;
  margin: 2px 0 0 0 !important; background: transparent !important; border: none !important; padding: 0 !important;
  font-size: 12px; text-align: center; }
/* Labelled figures (style mixing, interpolation strip): whole-number scale, labels outside the pixels. */
.gs-figure { overflow-x: auto; padding: 4px 0; }
.gs-figure-grid { display: grid; gap: 4px 6px; align-items: end; width: max-content; }
.gs-figure-cols { display: flex; }
.gs-figure-cols span { display: block; text-align: center; font-size: 12px; white-space: nowrap; overflow: hidden; }
.gs-figure-rows { display: flex; flex-direction: column; align-self: start; }
.gs-figure-rows span { display: flex; align-items: center; justify-content: flex-end; font-size: 12px;
  white-space: nowrap; }
.gs-figure img { display: block; }
.gs-download { font-size: 13px; display: inline-block; margin-top: 4px; }
/* Keyboard focus is visible on sliders, number boxes, radios and checkboxes. */
input[type=range]:focus-visible, input[type=number]:focus-visible, button:focus-visible,
input[type=radio]:focus-visible, input[type=checkbox]:focus-visible {
  outline: 3px solid #1d4ed8 !important; outline-offset: 2px; }
/* Text at 4.5:1 or more (WCAG AA) on the theme's light backgrounds: hints, slider ends, labels, the footer, the
   primary buttons and chosen radios, the parameters' JSON (the theme's greys and indigo-400s are 2.1-4.47:1). */
.info-text, .min_value, .max_value, .or, footer, footer button, footer a, footer div { color: #4b5563 !important; }
[data-testid=block-info], [data-testid=block-label], button[role=tab].selected {
  color: #4338ca !important; }
[data-testid=block-label] { background: #fff !important; }
button.primary, label.selected[data-testid$=-radio-label] { background: #4f46e5 !important; color: #fff !important; }
button.primary:hover { background: #4338ca !important; }
#restore .wrap { color: #4338ca !important; }
#params span { color: #1f2937 !important; }
#params .key { color: #9a3412 !important; }
input[aria-invalid=true] { outline: 2px solid #dc2626 !important; }
#gs-refusal { position: fixed; top: 12px; left: 50%; transform: translateX(-50%); z-index: 1000; max-width: 90vw;
  background: #fef2f2; color: #7f1d1d; border: 1px solid #dc2626; border-radius: 8px; padding: 10px 14px;
  box-shadow: 0 4px 12px rgba(0,0,0,.15); font-size: 14px; }
#gs-refusal[hidden] { display: none; }
#gs-refusal button { margin-left: 12px; background: none; border: none; cursor: pointer; font-size: 16px; }
.gs-direction-row { align-items: center; }
/* Messages: the latest only (no stack), at the bottom of the window, never over Generate and the controls above it. */
.toast-wrap { top: auto !important; bottom: 12px !important; }
.toast-wrap > :not(:last-child) { display: none !important; }
/* Narrow screens: the tabs (and Generate) come before the sidebar. */
@media (max-width: 760px) {
  #gs-main-col { order: -1; }
  #gs-intro p { display: none; }
}
"""

# Number boxes that are not sliders: their bounds (sliders' boxes carry min / max / step attributes already).
GUARDED_NUMBERS = {
    "seed": {"label": "Seed", "min": 0, "max": MAX_SEED, "whole": True},
    "interp-from": {"label": "From seed", "min": 0, "max": MAX_SEED, "whole": True},
    "interp-to": {"label": "To seed", "min": 0, "max": MAX_SEED, "whole": True},
    "browse-start": {"label": "First seed", "min": 0, "max": MAX_SEED, "whole": True},
    "top-k": {"label": "Top-k", "min": 0, "max": 1_000_000, "whole": True},
}

_JS = r"""
<script>
(() => {
  const GUARDED = __GUARDED__;
  const STRIP_AMOUNTS = __STRIP_AMOUNTS__;
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;

  // ---- refusals: one readable line, the control keeps its last good value ----
  function refusalBox() {
    let box = document.getElementById('gs-refusal');
    if (!box) {
      box = document.createElement('div');
      box.id = 'gs-refusal'; box.setAttribute('role', 'alert'); box.hidden = true;
      box.innerHTML = '<span></span><button type="button" aria-label="Dismiss">×</button>';
      box.querySelector('button').addEventListener('click', () => { box.hidden = true; });
      document.body.appendChild(box);
    }
    return box;
  }
  let refusalTimer = null;
  window.gsRefuse = (message) => {
    const box = refusalBox();
    box.querySelector('span').textContent = message;
    box.hidden = false;
    clearTimeout(refusalTimer);
    refusalTimer = setTimeout(() => { box.hidden = true; }, 10000);
  };

  function blockOf(input) { return input.closest('.block'); }
  function listed(input) {  // the listed number box this input belongs to, by the nearest id
    for (let el = input; el; el = el.parentElement) if (el.id && GUARDED[el.id]) return GUARDED[el.id];
    return null;
  }
  function labelOf(input, block) {
    const cfg = listed(input);
    if (cfg) return cfg.label;
    const label = block && block.querySelector('label');
    return label ? label.innerText.trim().split('\n')[0] : 'value';
  }
  function rules(input) {
    const cfg = listed(input);
    if (cfg) return cfg;
    const block = blockOf(input);
    if (!block) return null;
    const range = block.querySelector('input[type=range]');
    if (!range) return null;  // only sliders' boxes and the listed number boxes are checked
    const step = parseFloat(input.getAttribute('step'));
    return { min: parseFloat(input.getAttribute('min')), max: parseFloat(input.getAttribute('max')),
             whole: Number.isInteger(step) && step >= 1 };
  }
  function fmt(x) { return Number.isInteger(x) ? String(x) : String(+x.toFixed(6)); }
  function problem(input) {
    const r = rules(input);
    if (!r) return null;
    const text = input.value.trim();
    const label = labelOf(input, blockOf(input));
    const kept = 'nothing was changed.';
    const range = `between ${fmt(r.min)} and ${fmt(r.max)}`;
    if (input.validity.badInput || text === '') return `${label}: enter a number ${range}; ${kept}`;
    const v = Number(text);
    if (!Number.isFinite(v)) return `${label}: '${text}' is not a number; ${kept}`;
    if (r.whole && !Number.isInteger(v)) return `${label}: ${text} is not a whole number; ${kept}`;
    if (v < r.min || v > r.max) return `${label}: ${text} is not ${range}; ${kept}`;
    return null;
  }
  function lastGood(input) {
    const range = blockOf(input)?.querySelector('input[type=range]');
    return range ? range.value : (input.dataset.gsLast ?? '');
  }
  function isGuarded(t) { return t instanceof HTMLInputElement && t.type === 'number' && rules(t) !== null; }

  window.addEventListener('focusin', (e) => {
    if (isGuarded(e.target)) e.target.dataset.gsLast = e.target.value;
  }, true);
  window.addEventListener('input', (e) => {
    const t = e.target;
    if (!isGuarded(t)) return;
    if (problem(t)) { t.setAttribute('aria-invalid', 'true'); e.stopImmediatePropagation(); }
    else { t.removeAttribute('aria-invalid'); t.dataset.gsLast = t.value; }
  }, true);
  function refuse(e) {
    const t = e.target;
    if (!isGuarded(t)) return false;
    const msg = problem(t);
    if (!msg) return false;
    e.stopImmediatePropagation(); e.preventDefault();
    window.gsRefuse(msg);
    setter.call(t, lastGood(t));
    t.removeAttribute('aria-invalid');
    return true;
  }
  window.addEventListener('blur', refuse, true);
  window.addEventListener('focusout', refuse, true);
  window.addEventListener('keypress', (e) => { if (e.key === 'Enter') refuse(e); }, true);
  // A slider renders on release, which Gradio sends on pointerup and on leaving its box only: Enter in its box and
  // keys that move it (arrows, Home, End, Page Up / Down) release it too.
  function sliderOf(t) {
    if (!(t instanceof HTMLInputElement) || (t.type !== 'number' && t.type !== 'range')) return null;
    return blockOf(t)?.querySelector('input[type=range]') ? t : null;
  }
  function release(t) { t.dispatchEvent(new PointerEvent('pointerup', { bubbles: true })); }
  const MOVES = ['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'Home', 'End', 'PageUp', 'PageDown'];
  window.addEventListener('keyup', (e) => {
    const t = sliderOf(e.target);
    if (t && MOVES.includes(e.key) && !(t.type === 'number' && problem(t))) release(t);
  }, true);
  window.addEventListener('keydown', (e) => {
    const t = e.target;
    if (e.key === 'Enter') { if (!refuse(e) && sliderOf(t)) release(t); return; }
    // Seed +/- 1 with the arrow keys: the box shows the new seed at once, renders collapse to the latest.
    if ((e.key === 'ArrowUp' || e.key === 'ArrowDown') && !e.altKey && !e.ctrlKey && !e.metaKey
        && t instanceof HTMLInputElement && t.closest('#seed')) {
      e.preventDefault(); e.stopImmediatePropagation();
      if (problem(t)) { refuse(e); return; }
      const v = Math.min(Math.max(Number(t.value) + (e.key === 'ArrowUp' ? 1 : -1), 0), GUARDED.seed.max);
      setter.call(t, String(v));
      t.dataset.gsLast = String(v);
      t.dispatchEvent(new Event('input', { bubbles: true }));
      setTimeout(() => document.querySelector('#seed-go')?.click(), 0);
    }
  }, true);

  // ---- a click on a direction strip (the seed at -3 .. +3 along it) sets that direction's slider and renders ----
  document.addEventListener('click', (e) => {
    const img = e.target instanceof Element ? e.target.closest('.gs-strip img') : null;
    const k = img?.closest('.gs-strip')?.id.replace('strip-', '');
    const box = document.querySelector(`#edit-${k} input[type=number]`);
    if (!box) return;
    const r = img.getBoundingClientRect(), n = STRIP_AMOUNTS.length;
    const i = Math.min(Math.max(Math.floor(((e.clientX - r.left) / r.width) * n), 0), n - 1);
    setter.call(box, String(STRIP_AMOUNTS[i]));
    box.dispatchEvent(new Event('input', { bubbles: true }));
    release(box);
  }, true);

  // ---- whole-number scaling of pixel images (.gs-int): k = floor(min(box width / w, max height / h)) ----
  function fit(img) {
    const box = img.closest('.gs-int');
    if (!box || !img.naturalWidth) return;
    const maxH = parseFloat(getComputedStyle(box).getPropertyValue('--gs-max-h')) || 384;
    const availW = Math.max(box.clientWidth - 16, 1);
    const k = Math.max(1, Math.floor(Math.min(availW / img.naturalWidth, maxH / img.naturalHeight)));
    img.style.width = `${img.naturalWidth * k}px`;
    img.style.height = `${img.naturalHeight * k}px`;
    img.dataset.scale = String(k);
  }
  document.addEventListener('load', (e) => { if (e.target.tagName === 'IMG') fit(e.target); }, true);
  window.addEventListener('resize', () => document.querySelectorAll('.gs-int img').forEach(fit));
  new MutationObserver(() => document.querySelectorAll('.gs-int img').forEach((img) => {
    if (img.complete && img.dataset.fitSrc !== img.src) { img.dataset.fitSrc = img.src; fit(img); }
  })).observe(document.documentElement, { subtree: true, childList: true, attributes: true, attributeFilter: ['src'] });

  // ---- the settings in the URL (written by the app after each render) ----
  window.gsSetUrl = (query) => {
    if (typeof query !== 'string') return [];
    history.replaceState(history.state, '', query ? `${location.pathname}?${query}` : location.pathname);
    return [];
  };
  window.gsSetTab = (tab) => {
    const u = new URL(location.href);
    if ([...u.searchParams.keys()].length) {
      u.searchParams.set('tab', tab);
      history.replaceState(history.state, '', u);
    }
    return tab;
  };
  // ---- a link's tab, once its button is shown: a tab the first model hid is un-hidden and selected in one update,
  // and a slow browser may still show the Seed tab; its button is clicked when it appears (Seed still selected:
  // a tab the user chose meanwhile is kept). ``hidden``: tab id -> its button's label.
  window.gsShowTab = (tab, hidden) => {
    const label = hidden[tab];
    if (!label) return tab;
    const started = Date.now();
    const timer = setInterval(() => {
      const buttons = [...document.querySelectorAll('[role=tab]')];
      const button = buttons.find((b) => b.innerText.trim() === label && b.offsetParent !== null);
      const current = buttons.find((b) => b.getAttribute('aria-selected') === 'true');
      if (button || Date.now() - started > 10000) clearInterval(timer);
      if (button && button !== current && (!current || current.innerText.trim() === 'Seed')) button.click();
    }, 100);
    return tab;
  };
  // ---- Copy link: the page's address (every setting, written after each render) to the clipboard ----
  window.gsCopyLink = async () => {
    const url = location.href;
    let ok = false;
    try {
      await navigator.clipboard.writeText(url);
      ok = true;
    } catch (e) {  // no Clipboard API (plain http on another host): the old way, from a selected text area
      const area = document.createElement('textarea');
      area.value = url; area.setAttribute('readonly', ''); area.style.position = 'fixed'; area.style.opacity = '0';
      document.body.appendChild(area); area.select();
      try { ok = document.execCommand('copy'); } catch (e2) { ok = false; }
      area.remove();
    }
    const button = document.querySelector('#copy-link');
    let note = document.getElementById('gs-copied');
    if (!note && button) {
      note = document.createElement('span');
      note.id = 'gs-copied'; note.setAttribute('role', 'status');
      button.insertAdjacentElement('afterend', note);
    }
    if (note) note.textContent = ok ? 'Link copied.' : 'Could not copy: copy the address bar instead.';
    return [];
  };
})();
</script>
"""


def head() -> str:
    """The page's script (Gradio ``head``)."""
    return _JS.replace("__GUARDED__", json.dumps(GUARDED_NUMBERS)).replace(
        "__STRIP_AMOUNTS__", json.dumps(STRIP_AMOUNTS)
    )
