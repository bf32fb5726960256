// The Firestore emulator of the tests (@firestore-emulator/server), counting what is written.
//
//   node firestore_counting.js EMULATOR_DIR PORT LOG
//
// EMULATOR_DIR is where the emulator is installed (tests/firestore_emulator). Every document
// write a commit makes (a set or a delete) appends one line to LOG:
//   <epoch ms>\t<set|delete>\t<document path>\t<bytes of the write>
// so a benchmark counts the billed document writes, when each happened, and how large each
// was. Prints "ready <port>" once it listens; stops on SIGTERM/SIGINT.
const fs = require("fs");

const [emulatorDir, portText, logPath] = process.argv.slice(2);
const { FirestoreServer } = require(
  require.resolve("@firestore-emulator/server", { paths: [emulatorDir] }),
);

const log = fs.openSync(logPath, "a");
const server = new FirestoreServer();
const write = server.state.writeV1Document.bind(server.state);
server.state.writeV1Document = (date, change) => {
  const kind = change.has_delete ? "delete" : "set";
  const path = change.has_delete ? change.delete : change.update.name;
  const bytes = typeof change.serialize === "function" ? change.serialize().length : 0;
  fs.writeSync(log, `${date.getTime()}\t${kind}\t${path}\t${bytes}\n`);
  return write(date, change);
};

server.start(Number(portText)).then(() => {
  console.log(`ready ${portText}`);
});
const stop = () => {
  Promise.resolve(server.stop ? server.stop() : undefined).finally(() => {
    fs.closeSync(log);
    process.exit(0);
  });
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
