// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Committee} from "./Committee.sol";
import {Eip712} from "./Crypto.sol";
import {IERC20, SafeTransfer} from "./IERC20.sol";

/// @title Staking
/// @notice Operators' bonds: bond, request an unbond, withdraw. Unbonding tokens are paid
/// after `unbondDelay` with the committee's `ExitClearance` (a quorum attesting that the
/// operator's nodes left, and that in a whole settled epoch after that they held no data
/// and owed no penalty), or without it once `exitFallbackDelay` has passed since the
/// request, so a committee that refuses cannot hold a bond forever. The clearance names
/// the unbond's `readyAt`, which every request restarts, so a clearance never releases
/// tokens unbonded after it was signed. The committee slashes by quorum over an EIP-712 `Slash` naming the operator, the amount and
/// the epoch whose ledger computed it; each (operator, epoch) is slashed at most once, so
/// a signed slash cannot be replayed. A slash takes from the bond first, then from tokens
/// waiting to unbond (requesting an unbond does not escape a slash), capped at both, and
/// sends what it took to `repairPot` (which pays for re-replicating lost data).
contract Staking is Eip712 {
    using SafeTransfer for IERC20;

    bytes32 public constant SLASH_TYPEHASH =
        keccak256("Slash(address operator,uint256 amount,uint64 epoch,uint256 deadline)");
    bytes32 public constant EXIT_CLEARANCE_TYPEHASH = keccak256(
        "ExitClearance(address operator,uint256 unbondReadyAt,uint64 quietEpoch,uint256 deadline)"
    );

    struct Unbonding {
        uint256 amount;
        uint256 readyAt;
    }

    IERC20 public immutable token;
    Committee public immutable committee;
    address public immutable repairPot;
    uint256 public immutable unbondDelay;
    /// How long after a request unbonding tokens are paid without a clearance.
    uint256 public immutable exitFallbackDelay;

    mapping(address => uint256) public bonded;
    mapping(address => Unbonding) public unbonding;
    mapping(address => mapping(uint64 => bool)) public slashedIn;

    event Bonded(address indexed operator, uint256 amount);
    event UnbondRequested(address indexed operator, uint256 amount, uint256 readyAt);
    event Unbonded(address indexed operator, uint256 amount);
    event Slashed(address indexed operator, uint64 indexed epoch, uint256 asked, uint256 taken);

    error Expired();
    error AlreadySlashed();
    error NotEnoughBonded();
    error NothingToWithdraw();
    error TooEarly(uint256 readyAt);
    error FallbackBeforeDelay();

    constructor(
        IERC20 token_,
        Committee committee_,
        address repairPot_,
        uint256 unbondDelay_,
        uint256 exitFallbackDelay_
    ) Eip712("Xnode Staking", "1") {
        if (exitFallbackDelay_ < unbondDelay_) revert FallbackBeforeDelay();
        token = token_;
        committee = committee_;
        repairPot = repairPot_;
        unbondDelay = unbondDelay_;
        exitFallbackDelay = exitFallbackDelay_;
    }

    function bond(uint256 amount) external {
        bonded[msg.sender] += amount;
        token.take(msg.sender, address(this), amount);
        emit Bonded(msg.sender, amount);
    }

    /// Moves `amount` from the bond to unbonding; the delay restarts for the whole amount
    /// unbonding, so adding to it never shortens anyone's wait.
    function requestUnbond(uint256 amount) external {
        uint256 bond_ = bonded[msg.sender];
        if (amount > bond_) revert NotEnoughBonded();
        bonded[msg.sender] = bond_ - amount;
        Unbonding storage pending = unbonding[msg.sender];
        pending.amount += amount;
        pending.readyAt = block.timestamp + unbondDelay;
        emit UnbondRequested(msg.sender, pending.amount, pending.readyAt);
    }

    /// Pays the unbonding tokens without a clearance, once `exitFallbackDelay` has passed
    /// since the (last) request.
    function withdraw() external {
        Unbonding memory pending = unbonding[msg.sender];
        if (pending.amount == 0) revert NothingToWithdraw();
        uint256 fallbackAt = pending.readyAt - unbondDelay + exitFallbackDelay;
        if (block.timestamp < fallbackAt) revert TooEarly(fallbackAt);
        _pay(pending.amount);
    }

    /// Pays the unbonding tokens after `unbondDelay` with a committee quorum over the
    /// caller's `ExitClearance` for its current unbond.
    function withdrawCleared(uint64 quietEpoch, uint256 deadline, bytes[] calldata signatures)
        external
    {
        Unbonding memory pending = unbonding[msg.sender];
        if (pending.amount == 0) revert NothingToWithdraw();
        if (block.timestamp < pending.readyAt) revert TooEarly(pending.readyAt);
        if (block.timestamp > deadline) revert Expired();
        committee.checkQuorum(
            exitClearanceDigest(msg.sender, pending.readyAt, quietEpoch, deadline), signatures
        );
        _pay(pending.amount);
    }

    function _pay(uint256 amount) private {
        delete unbonding[msg.sender];
        token.pay(msg.sender, amount);
        emit Unbonded(msg.sender, amount);
    }

    /// The EIP-712 digest the committee signs to clear an operator's exit.
    function exitClearanceDigest(
        address operator,
        uint256 unbondReadyAt,
        uint64 quietEpoch,
        uint256 deadline
    ) public view returns (bytes32) {
        return _digest(
            keccak256(
                abi.encode(EXIT_CLEARANCE_TYPEHASH, operator, unbondReadyAt, quietEpoch, deadline)
            )
        );
    }

    /// The EIP-712 digest the committee signs for a slash.
    function slashDigest(address operator, uint256 amount, uint64 epoch, uint256 deadline)
        public
        view
        returns (bytes32)
    {
        return _digest(keccak256(abi.encode(SLASH_TYPEHASH, operator, amount, epoch, deadline)));
    }

    function slash(
        address operator,
        uint256 amount,
        uint64 epoch,
        uint256 deadline,
        bytes[] calldata signatures
    ) external {
        if (block.timestamp > deadline) revert Expired();
        if (slashedIn[operator][epoch]) revert AlreadySlashed();
        committee.checkQuorum(slashDigest(operator, amount, epoch, deadline), signatures);
        slashedIn[operator][epoch] = true;

        uint256 fromBond = bonded[operator];
        if (fromBond > amount) fromBond = amount;
        bonded[operator] -= fromBond;
        uint256 fromUnbonding = unbonding[operator].amount;
        if (fromUnbonding > amount - fromBond) fromUnbonding = amount - fromBond;
        unbonding[operator].amount -= fromUnbonding;

        uint256 taken = fromBond + fromUnbonding;
        token.pay(repairPot, taken);
        emit Slashed(operator, epoch, amount, taken);
    }
}
