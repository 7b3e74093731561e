"""The page around the tabs: readable colours, the phone layout, the browser tab's title, and Gradio's own words in
Chinese.

``app.py`` mounts the Blocks with ``gr.mount_gradio_app(css=CSS, js=PAGE_JS)`` (Gradio 6 takes the page's style
and script at launch or mount, not on the Blocks): the style is in the page from its first paint, the script runs
once when the page loads.

Gradio translates most of its own strings through its i18n (``zh-CN`` ships with it; our ``LABELS`` add to it),
but a few are written into its components in English (tooltips such as "Capture from camera", the progress
text "processing | 1.2/3.4s", toolbar buttons). ``GRADIO_ZH`` lists those; in a Chinese browser the script
replaces them (attributes, and text outside our results) as Gradio renders them.
"""

from __future__ import annotations

import json

# Every coloured control keeps its text at >= 4.5:1 (WCAG AA); tests/test_browser_ui.py measures the rendered page.
CSS = """
:root:root, :root:root .dark {
  --primary-500: #c2410c; --primary-600: #9a3412; --color-accent: #c2410c;
  --button-primary-background-fill: #c2410c; --button-primary-background-fill-hover: #9a3412;
  --button-primary-text-color: #ffffff; --button-primary-text-color-hover: #ffffff;
  --button-cancel-background-fill: #b91c1c; --button-cancel-background-fill-hover: #991b1b;
  --button-cancel-text-color: #ffffff; --button-cancel-text-color-hover: #ffffff;
  --checkbox-background-color-selected: #c2410c; --slider-color: #c2410c; --loader-color: #c2410c;
}
.frood-badge, .prose .frood-badge {
  display: inline-block; padding: 0 0.45em; border-radius: 0.3em; color: #ffffff !important; font-weight: 600;
}
.frood-badge-good { background: #15803d; }
.frood-badge-borderline { background: #b45309; }
.frood-badge-low { background: #b91c1c; }
.frood-warning, .prose .frood-warning { color: #b91c1c !important; font-weight: 600; }
.frood-done, .prose .frood-done { color: #15803d !important; font-weight: 600; }
#monitor-tab .modebar-container { display: none !important; }
#monitor-tab .js-plotly-plot { max-width: 100%; }
@media (max-width: 640px) {
  #monitor-per-source table { font-size: 12px; }
  #monitor-per-source th, #monitor-per-source td { white-space: normal !important; min-width: 0 !important; }
  .gradio-container { padding-left: 6px !important; padding-right: 6px !important; }
}
"""

TITLES = {"en": "Face recognition · face-recognition-ood", "zh": "人脸识别与质量评分"}

# Gradio's strings written in English into its components (not in its i18n files), and their Chinese.
GRADIO_ZH = {
    "Fullscreen": "全屏",
    "Exit fullscreen mode": "退出全屏",
    "Exit fullscreen": "退出全屏",
    "Remove Image": "移除图像",
    "Capture from camera": "用摄像头拍摄",
    "Paste from clipboard": "从剪贴板粘贴",
    "Upload file": "上传文件",
    "File upload": "上传文件",
    "More tabs": "更多标签页",
    "Gradio footer navigation": "页脚导航",
    "Download": "下载",
    "Copy": "复制",
    "Copied": "已复制",
    "Copied!": "已复制！",
    "Copy to clipboard": "复制到剪贴板",
    "Export": "导出",
    "Clear": "清除",
    "Share": "分享",
    "Search": "搜索",
    "Select all": "全选",
    "Undo": "撤销",
    "Redo": "重做",
    "Loading...": "加载中...",
    "Select a video source": "选择视频来源",
    "Select video source": "选择视频来源",
    "Take a photo": "拍照",
    "Take photo": "拍照",
    "Close": "关闭",
    "Error": "错误",
    "Dropdown": "下拉菜单",
    "Sort column": "排序列",
    "Sort ascending": "升序排序",
    "Sort descending": "降序排序",
    "Clear sort": "清除排序",
    "Copy table": "复制表格",
    "Copy table data": "复制表格数据",
    "Table actions": "表格操作",
    "Dataframe": "数据表",
    "Image actions": "图像操作",
    "Drop files here": "将文件拖放到此处",
    "Download table": "下载表格",
    "Filter": "筛选",
    "Reset": "重置",
    "Pan": "平移",
    "Zoom in": "放大",
    "Zoom out": "缩小",
    "Zoom": "缩放",
    "Autoscale": "自动缩放",
    "Reset axes": "重置坐标轴",
    "Box Select": "框选",
    "Lasso Select": "套索选择",
    "Download plot as a PNG": "下载图表（PNG）",
    "Download plot as a png": "下载图表（PNG）",
    "Collapse": "折叠",
    "Expand": "展开",
    "Empty value": "空值",
    "Click to upload or drop files": "点击上传或拖放文件",
    "Remove this file": "移除此文件",
    "Open cell menu": "打开单元格菜单",
}
PROGRESS_ZH = {"processing": "处理中", "queue": "排队", "Waiting": "等待中"}

PAGE_JS_TEMPLATE = r"""
() => {
  const titles = %(titles)s, words = %(words)s, progress = %(progress)s;
  const zh = (navigator.language || "").toLowerCase().startsWith("zh");
  document.title = zh ? titles.zh : titles.en;
  document.documentElement.lang = zh ? "zh-CN" : "en";
  if (!zh || window.froodTranslating) return;
  window.froodTranslating = true;
  const ours = ".prose, td, th, figcaption, [role=option], textarea, input";
  const attributes = ["aria-label", "title", "placeholder"];
  const text = (node) => {
    const value = node.nodeValue, key = value.trim();
    if (!key || (node.parentElement && node.parentElement.closest(ours))) return;
    if (words[key]) { node.nodeValue = value.replace(key, words[key]); return; }
    const match = key.match(/^(processing|queue|Waiting)\b/);
    if (match) node.nodeValue = value.replace(match[1], progress[match[1]]);
  };
  const attrs = (element) => {
    for (const name of attributes) {
      const value = element.getAttribute && element.getAttribute(name);
      if (!value) continue;
      if (words[value.trim()]) element.setAttribute(name, words[value.trim()]);
      const line = value.match(/^Line number (\d+)$/);
      if (line) element.setAttribute(name, `第 ${line[1]} 行`);
    }
  };
  const walk = (root) => {
    if (root.nodeType === 3) { text(root); return; }
    if (root.nodeType !== 1) return;
    attrs(root);
    root.querySelectorAll("[aria-label],[title],[placeholder]").forEach(attrs);
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) text(node);
  };
  walk(document.body);
  new MutationObserver((changes) => {
    for (const change of changes) {
      if (change.type === "characterData") text(change.target);
      else if (change.type === "attributes") attrs(change.target);
      else change.addedNodes.forEach(walk);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: attributes});
}
"""

PAGE_JS = PAGE_JS_TEMPLATE % {
    "titles": json.dumps(TITLES, ensure_ascii=False),
    "words": json.dumps(GRADIO_ZH, ensure_ascii=False),
    "progress": json.dumps(PROGRESS_ZH, ensure_ascii=False),
}
