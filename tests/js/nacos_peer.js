// get, publish, remove, a subscription, with auth: prints one JSON line
const { NacosConfigClient } = require('nacos');
const [addr, user, pw] = process.argv.slice(2);
(async () => {
  const client = new NacosConfigClient({ serverAddr: addr, namespace: 'dev', username: user, password: pw, requestTimeout: 6000 });
  client.on('error', (err) => { console.error('client error', err && err.message); });
  await client.ready();
  const out = {};
  out.get = await client.getConfig('seeded', 'G');
  out.publish = await client.publishSingle('p', 'G', '中文 ✓ first');
  out.readBack = await client.getConfig('p', 'G');
  const seen = [];
  const changed = new Promise((resolve) => {
    client.subscribe({ dataId: 'p', group: 'G' }, (content) => {
      seen.push(content);
      if (content === 'second') resolve();
    });
  });
  await new Promise((r) => setTimeout(r, 500));
  await client.publishSingle('p', 'G', 'second');
  await Promise.race([changed, new Promise((r) => setTimeout(r, 20000))]);
  out.seen = seen;
  out.remove = await client.remove('p', 'G');
  out.gone = await client.getConfig('p', 'G');
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
