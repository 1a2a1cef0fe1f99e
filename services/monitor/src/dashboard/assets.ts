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

/** Read errors that mean the path names no file: the asset is missing, not broken. */
const MISSING = new Set(['ENOENT', 'ENOTDIR']);

/**
 * The asset at a dashboard path (`/`, `/web/…`, `/vendor/…`), or undefined when there is none.
 * An asset found is cached after the first read. A miss or a failed read is not cached, so a
 * file that appears later is served, and a read that failed once (EMFILE, say) is tried again.
 */
export class Assets {
  private readonly cache = new Map<string, Promise<Asset | undefined>>();
  private vendor?: Map<string, string>;

  /** `webDir`: where the dashboard's own files are (a test gives its own). */
  constructor(private readonly webDir = WEB_DIR) {}

  /** Rejects when the file is there but cannot be read. */
  get(path: string): Promise<Asset | undefined> {
    const cached = this.cache.get(path);
    if (cached) return cached;
    // Kept while it loads, so that requests meanwhile share the read; dropped unless found.
    const loading = this.load(path).then(
      (asset) => {
        if (!asset) this.cache.delete(path);
        return asset;
      },
      (err: NodeJS.ErrnoException) => {
        this.cache.delete(path);
        if (err.code && MISSING.has(err.code)) return undefined;
        throw err;
      },
    );
    this.cache.set(path, loading);
    return loading;
  }

  private async load(path: string): Promise<Asset | undefined> {
    const file = this.fileOf(path);
    if (!file) return undefined;
    const ext = file.slice(file.lastIndexOf('.'));
    return { body: await readFile(file), contentType: CONTENT_TYPES[ext] ?? 'application/octet-stream' };
  }

  private fileOf(path: string): string | undefined {
    if (path === '/' || path === '/index.html') return join(this.webDir, 'index.html');
    if (path.startsWith('/vendor/')) return (this.vendor ??= vendorFiles()).get(path.slice('/vendor/'.length));
    if (path.startsWith('/web/')) {
      // No climbing out of web/.
      const file = normalize(join(this.webDir, path.slice('/web/'.length)));
      return file.startsWith(this.webDir + sep) ? file : undefined;
    }
    return undefined;
  }
}
