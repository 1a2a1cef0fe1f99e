import { readFile } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';

/**
 * The dashboard's browser files: its own ES modules from services/monitor/web, and the three
 * libraries it runs on, served from node_modules as their authors ship them (no bundler, no
 * CDN): preact and its hooks, htm (JSX-like templates in plain JS) and uPlot (the charts).
 */
const WEB_DIR = join(__dirname, '..', '..', 'web');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** /vendor/<name> → the file in node_modules, resolved once. */
function vendorFiles(): Map<string, string> {
  const htmDir = dirname(require.resolve('htm'));
  const uplotDir = dirname(require.resolve('uplot'));
  return new Map([
    ['preact.mjs', require.resolve('preact')],
    ['preact-hooks.mjs', require.resolve('preact/hooks')],
    ['htm.mjs', join(htmDir, 'htm.module.js')],
    ['uplot.mjs', join(uplotDir, 'uPlot.esm.js')],
    ['uplot.css', join(uplotDir, 'uPlot.min.css')],
  ]);
}

export interface Asset {
  body: Buffer;
  contentType: string;
}

/** The asset at a dashboard path (`/`, `/web/…`, `/vendor/…`), or undefined when there is none. Cached after the first read. */
export class Assets {
  private readonly cache = new Map<string, Promise<Asset | undefined>>();
  private vendor?: Map<string, string>;

  get(path: string): Promise<Asset | undefined> {
    let a = this.cache.get(path);
    if (!a) {
      a = this.load(path).catch(() => undefined);
      this.cache.set(path, a);
    }
    return a;
  }

  private async load(path: string): Promise<Asset | undefined> {
    const file = this.fileOf(path);
    if (!file) return undefined;
    const ext = file.slice(file.lastIndexOf('.'));
    return { body: await readFile(file), contentType: CONTENT_TYPES[ext] ?? 'application/octet-stream' };
  }

  private fileOf(path: string): string | undefined {
    if (path === '/' || path === '/index.html') return join(WEB_DIR, 'index.html');
    if (path.startsWith('/vendor/')) return (this.vendor ??= vendorFiles()).get(path.slice('/vendor/'.length));
    if (path.startsWith('/web/')) {
      // No climbing out of web/.
      const file = normalize(join(WEB_DIR, path.slice('/web/'.length)));
      return file.startsWith(WEB_DIR + sep) ? file : undefined;
    }
    return undefined;
  }
}
