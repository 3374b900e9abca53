// Deployments: replaced by the full page once compute lands in this node's API.

import { h, empty } from '../ui.js';
import { get } from '../api.js';

export function render(root) {
  root.append(h('header.page-head', h('div', h('h1', 'Deployments'), h('p.muted', 'WebAssembly functions, jobs and workers, placed on nodes automatically.'))));
  const box = h('section.card', h('p.muted.pad', 'Checking whether this node runs compute…'));
  root.append(box);
  get('/v1/openapi.json').then((doc) => {
    const has = doc.paths && Object.keys(doc.paths).some((p) => p.startsWith('/v1/deployments'));
    box.replaceChildren(has ? empty('Deployments', 'This node supports compute.') : empty('Compute is not available on this node yet',
      'This node\'s API has no deployments yet. Once compute ships, you will deploy WebAssembly modules from here.'));
  }).catch(() => box.replaceChildren(empty('Compute is not available on this node yet', 'The node did not describe its API.')));
}
