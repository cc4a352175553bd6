/** The widget's stylesheet; it lives in the widget's shadow root, so host pages keep theirs. */

export const CSS = `
:host { all: initial; display: inline-block; position: relative;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; }
.button { position: relative; display: inline-flex; align-items: center; justify-content: center;
  width: 40px; height: 40px; border: 1px solid #c9ced8; border-radius: 50%; background: #fff;
  color: inherit; cursor: pointer; }
.button:hover { background: #f2f4f8; }
.button:focus-visible, button:focus-visible, .item:focus-visible {
  outline: 3px solid #2f6fdf; outline-offset: 2px; }
.button svg { width: 20px; height: 20px; }
.badge { position: absolute; top: -4px; right: -4px; min-width: 18px; height: 18px; padding: 0 5px;
  box-sizing: border-box; border-radius: 9px; background: #c62828; color: #fff; font-size: 11px;
  font-weight: 700; line-height: 18px; text-align: center; }
.badge[hidden] { display: none; }
.panel { position: absolute; right: 0; top: 46px; z-index: 2147483000; width: 360px;
  max-width: calc(100vw - 24px); max-height: 70vh; overflow: auto; background: #fff;
  border: 1px solid #c9ced8; border-radius: 8px; box-shadow: 0 8px 28px rgba(20, 30, 50, .18); }
.panel[hidden] { display: none; }
.header { display: flex; align-items: center; justify-content: space-between; gap: 8px;
  padding: 10px 12px; border-bottom: 1px solid #e3e6ec; position: sticky; top: 0; background: #fff; }
h2 { margin: 0; font-size: 15px; }
h3 { display: flex; align-items: center; gap: 6px; margin: 0; padding: 8px 12px 4px;
  font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #4a5263; }
.swatch { width: 10px; height: 10px; border-radius: 50%; background: var(--category); }
.group { border-left: 4px solid var(--category); }
.link { border: 0; background: none; color: #1f5fc9; cursor: pointer; font: inherit; padding: 2px 4px; }
.link:disabled { color: #8a91a0; cursor: default; }
.status { margin: 0; padding: 6px 12px; background: #fff6e0; color: #6b4a00; font-size: 12px; }
.status[hidden] { display: none; }
ul { list-style: none; margin: 0; padding: 0; }
.item { display: grid; grid-template-columns: 1fr auto; gap: 2px 8px; padding: 8px 12px;
  border-top: 1px solid #eef0f4; }
.item[data-read="false"] { background: #f3f7ff; }
.item[data-read="false"] .title::before { content: ""; display: inline-block; width: 8px; height: 8px;
  margin-right: 6px; border-radius: 50%; background: var(--category); vertical-align: middle; }
.title { font-weight: 600; overflow-wrap: anywhere; }
.message { grid-column: 1; margin: 0; color: #3a4252; overflow-wrap: anywhere; white-space: pre-line; }
time { grid-column: 1; font-size: 12px; color: #6a7282; }
.item .link { grid-column: 2; grid-row: 1 / span 3; align-self: start; font-size: 12px; }
.empty { margin: 0; padding: 16px 12px; color: #6a7282; }
.sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
`
