// Compiles contracts/src/*.sol with the pinned solc-js and writes one JSON artifact per
// deployable contract (abi, bytecode, deployedBytecode) into the directory given as the
// first argument. Called by scripts/build-contracts.sh; the settings here are the ones
// the committed artifacts were built with, so changing them changes the bytecode.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const outDir = process.argv[2];
if (!outDir) {
  console.error("usage: node compile.js <out-dir>");
  process.exit(2);
}
const srcDir = path.join(__dirname, "src");
const DEPLOYABLE = ["XnodeToken", "Committee", "Settlement", "Staking"];

const sources = {};
for (const file of fs.readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[`src/${file}`] = { content: fs.readFileSync(path.join(srcDir, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 10000 },
    evmVersion: "cancun",
    viaIR: false,
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
// Imports are all relative to src/, which solc resolves from the sources given above.
const output = JSON.parse(solc.compile(JSON.stringify(input)));
// Warnings fail the build too: the contracts are small enough to keep free of them.
for (const message of output.errors || []) console.error(message.formattedMessage);
if ((output.errors || []).length > 0) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
for (const name of DEPLOYABLE) {
  const contract = output.contracts[`src/${name}.sol`]?.[name];
  if (!contract) {
    console.error(`no contract ${name} in src/${name}.sol`);
    process.exit(1);
  }
  const artifact = {
    contractName: name,
    compiler: `solc-js ${solc.version()}`,
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
  };
  fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
}
console.error(`wrote ${DEPLOYABLE.length} artifacts to ${outDir} with solc ${solc.version()}`);
